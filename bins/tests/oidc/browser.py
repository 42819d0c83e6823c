"""The person at the browser in bins/tests/oidc_login.rs: opens the PIN page's single sign-on
link, fills in the provider's login form (any name and password) and consent form, and follows
the redirects back to direwolf's PIN page.

Usage: python3 browser.py URL [PIN]
With PIN, then posts it to the PIN page as the page's script does (with the page's cookies).
Prints one JSON line: {"status": HTTP status of the last page, "url": its address, "body": its
text, "visited": every address redirected to, "pin": [status, text] of the PIN post}.
Only the standard library: cookies and redirects as a browser handles them.
"""

import html.parser
import http.cookiejar
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 20


class Form(html.parser.HTMLParser):
    """The first form of a page: its action and its inputs' names and values."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}
        self.done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.done:
            return
        if tag == "form" and self.action is None:
            self.action = attrs.get("action", "")
        elif tag == "input" and self.action is not None and attrs.get("name"):
            value = attrs.get("value") or ""
            if attrs["name"] == "login":
                value = "ada"
            elif attrs["name"] == "password":
                value = "any password"
            self.fields[attrs["name"]] = value

    def handle_endtag(self, tag):
        if tag == "form" and self.action is not None:
            self.done = True


class Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, remembering where to."""

    visited = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        Redirects.visited.append(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(opener, url, data=None, headers=None):
    """(status, text, final address) of a request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        response = opener.open(request, timeout=TIMEOUT)
        return response.status, response.read().decode(), response.geturl()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), e.geturl()


def main():
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), Redirects()
    )
    url, data = sys.argv[1], None
    # Login form, consent form, then back at direwolf; a few more steps at most.
    for _ in range(6):
        status, body, url = open_url(opener, url, data)
        form = Form()
        form.feed(body)
        if status != 200 or form.action is None or "/interaction/" not in form.action:
            break
        url = urllib.parse.urljoin(url, form.action)
        data = urllib.parse.urlencode(form.fields).encode()
    report = {"status": status, "url": url, "body": body, "visited": Redirects.visited}
    if len(sys.argv) > 2:
        # The page's script: the secret from the fragment, the PIN as JSON, same-origin cookies.
        page = urllib.parse.urlsplit(url)
        secret = urllib.parse.unquote(page.fragment)
        pin = json.dumps({"pin": sys.argv[2], "secret": secret}).encode()
        origin = f"{page.scheme}://{page.netloc}"
        status, text, _ = open_url(
            opener,
            f"{origin}/pin/",
            pin,
            {"Content-Type": "application/json", "Origin": origin},
        )
        report["pin"] = [status, text]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
