//! App images: PNG only (what every Moonlight client decodes), recognised by its signature,
//! never by what the client claims.

use hyper::StatusCode;

use super::reply::ApiError;

/// The largest app image accepted (2 MiB; box art is a few hundred KiB).
pub const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Other image formats, recognised only to say why they are refused.
const OTHERS: &[(&[u8], &str)] = &[
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
];

/// Checks that `bytes` are a PNG file: 415 otherwise, naming the format when it is another image.
pub fn check_png(bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.starts_with(PNG) {
        return Ok(());
    }
    let webp = bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP";
    let other = OTHERS
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, name)| *name)
        .or(webp.then_some("WebP"));
    let message = match other {
        Some(format) => format!("{format} images are not accepted: app images must be PNG"),
        None => "not an image: app images must be PNG files".to_owned(),
    };
    Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_png_by_signature() {
        assert!(check_png(b"\x89PNG\r\n\x1a\nrest").is_ok());
        for (bytes, says) in [
            (&b"\xff\xd8\xff\xe0JFIF"[..], "JPEG"),
            (b"GIF89a....", "GIF"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "WebP"),
            (b"<svg xmlns=", "not an image"),
            (b"", "not an image"),
            (b"\x89PNG", "not an image"),
        ] {
            let err = check_png(bytes).unwrap_err();
            assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert!(err.message.contains(says), "{}", err.message);
        }
    }
}
