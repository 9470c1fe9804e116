"""Media types of downloaded attachments, kept apart from the media service so the app can
declare its binary response types at import without loading the service."""

from __future__ import annotations

#: The extension a stored file gets for its type, and (reversed) the type the local media
#: route serves for an extension. A fixed table, not `mimetypes`, whose answers vary by host.
EXTENSIONS: dict[str, str] = {
    "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp", "image/heic": "heic",
    "image/avif": "avif", "audio/ogg": "ogg", "audio/opus": "opus", "audio/mpeg": "mp3", "audio/mp4": "m4a",
    "audio/aac": "aac", "audio/amr": "amr", "audio/wav": "wav", "audio/webm": "weba", "audio/3gpp": "3ga",
    "video/mp4": "mp4", "video/3gpp": "3gp", "video/quicktime": "mov", "video/webm": "webm",
    "video/x-msvideo": "avi", "application/pdf": "pdf", "text/plain": "txt", "text/csv": "csv",
    "text/vcard": "vcf",
    "application/msword": "doc", "application/vnd.ms-excel": "xls", "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.oasis.opendocument.text": "odt", "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
}
TYPE_OF_EXTENSION = {ext: content_type for content_type, ext in EXTENSIONS.items()} | {"jpeg": "image/jpeg"}
#: What the local media route may answer with, minus text: Chalice base64-encodes a response
#: whose type is in `app.api.binary_types` and refuses a str body of such a type, so text/*
#: (the webhook acknowledgements are text/plain) must stay out and text files go out as str.
MEDIA_BINARY_TYPES = tuple(sorted(
    {t for t in TYPE_OF_EXTENSION.values() if not t.startswith("text/")} | {"application/octet-stream"}
))
