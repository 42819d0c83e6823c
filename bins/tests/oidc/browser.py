"""The person at the browser in bins/tests/oidc_login.rs: opens the PIN page's single sign-on
link, fills in the provider's login form (any name and password) and consent form, and follows
the redirects back to direwolf's PIN page.

Usage: python3 browser.py URL [PIN]
With PIN, then posts it to the PIN page as the page's script does (with the page's cookies).
Prints one JSON line: {"status": HTTP status of the last page, "url": its address, "body": its
text, "visited": every address redirected to, "pin": [status, text] of the PIN post}.

Usage: python3 browser.py --web-ui ADMIN_URL SECRET PIN
The web UI on the admin port (HTTPS, the test server's own certificate on loopback): follows
"Log in with single sign-on" (ADMIN_URL/ui/oidc/login), then, as the web UI's script does,
reads the session (GET /ui/session) and enters PIN for the pending pairing SECRET with the
session's CSRF token. Adds "session" (the JSON), "approve" ([status, text]) and "replay" ([status, text] of the
provider's redirect back, opened again) to the report.
Only the standard library: cookies and redirects as a browser handles them.
"""

import html.parser
import http.cookiejar
import json
import ssl
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


def log_in(opener, url):
    """Follows a login link through the provider's forms; the report of the last page."""
    data = None
    # Login form, consent form, then back at direwolf; a few more steps at most.
    for _ in range(6):
        status, body, url = open_url(opener, url, data)
        form = Form()
        form.feed(body)
        if status != 200 or form.action is None or "/interaction/" not in form.action:
            break
        url = urllib.parse.urljoin(url, form.action)
        data = urllib.parse.urlencode(form.fields).encode()
    return {"status": status, "url": url, "body": body, "visited": Redirects.visited}


def web_ui(admin_url, secret, pin):
    """The web UI's single sign-on, then the PIN entered as its script enters it."""
    # The test's own server on loopback, with its self-signed certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        urllib.request.HTTPSHandler(context=context),
        Redirects(),
    )
    report = log_in(opener, f"{admin_url}/ui/oidc/login")
    status, text, _ = open_url(opener, f"{admin_url}/ui/session")
    report["session"] = json.loads(text) if status == 200 else {"status": status, "text": text}
    headers = {"Content-Type": "application/json", "Origin": admin_url}
    if status == 200:
        headers["X-CSRF-Token"] = report["session"]["csrf"]
    status, text, _ = open_url(
        opener,
        f"{admin_url}/api/v1/pending-pairings/{secret}/approve",
        json.dumps({"pin": pin}).encode(),
        headers,
    )
    report["approve"] = [status, text]
    # The provider's redirect back, again (a replay, from history or a stolen URL).
    callback = next((u for u in report["visited"] if "/ui/oidc/callback?" in u), None)
    if callback:
        status, text, _ = open_url(opener, callback)
        report["replay"] = [status, text]
    print(json.dumps(report))


def main():
    if sys.argv[1] == "--web-ui":
        web_ui(*sys.argv[2:5])
        return
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), Redirects()
    )
    report = log_in(opener, sys.argv[1])
    url = report["url"]
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
