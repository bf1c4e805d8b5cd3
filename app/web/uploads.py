"""Request bodies -> image bytes: multipart fields or one raw image body (web layer)."""

from __future__ import annotations

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from app.errors import (
    ClientDisconnected,
    MalformedRequest,
    MissingFile,
    UnsupportedMediaType,
    UploadStorageFull,
)

Upload = tuple[str | None, bytes]  # (filename, bytes)


async def read_images(request: Request, field: str, max_files: int) -> list[Upload]:
    """The uploaded images: multipart `field` (up to `max_files`), or a raw image body
    when `max_files` is 1."""
    try:
        return await _parse(request, field, max_files)
    except ClientDisconnect:  # the client gave up mid-upload: not a server error
        raise ClientDisconnected("client closed the connection during the upload") from None
    except OSError as exc:  # parts over 1 MB spool to a temporary file (/tmp)
        raise UploadStorageFull(
            f"no room to receive the upload ({exc.strerror or exc}); retry shortly"
        ) from None


class _MultiPart(MultiPartParser):
    """Starlette's parser, which also notices a body cut short: python-multipart accepts
    one that ends before the closing boundary, whose parts would then look "missing"."""

    complete = False

    def on_end(self) -> None:
        self.complete = True

    async def parse_complete(self) -> FormData:
        form = await self.parse()
        if not self.complete:
            await form.close()
            for file in self._files_to_close_on_error:  # the part left open
                file.close()
            raise MalformedRequest("multipart body ends before its closing boundary")
        return form


async def _parse(request: Request, field: str, max_files: int) -> list[Upload]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        parser = _MultiPart(
            request.headers, request.stream(), max_files=max_files + 1, max_fields=max_files + 16
        )
        try:
            form = await parser.parse_complete()
        except MultiPartException as exc:
            raise MalformedRequest(f"malformed multipart body: {exc.message}") from None
        try:
            uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
            if not uploads:
                raise MissingFile(f"multipart body has no file field named '{field}'")
            if len(uploads) > max_files:
                raise MalformedRequest(f"send at most {max_files} file(s) in '{field}'")
            return [(upload.filename, await upload.read()) for upload in uploads]
        finally:
            await form.close()
    if media.startswith("image/") or media == "application/octet-stream":
        if max_files > 1:
            raise UnsupportedMediaType(f"{request.url.path} takes multipart/form-data only")
        return [(None, await request.body())]
    raise UnsupportedMediaType(
        f"unsupported content type '{media or 'none'}'; send multipart/form-data or image/*"
    )
