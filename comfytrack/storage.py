"""Archived outputs in an S3-compatible bucket (django-storages' S3Storage), read as a stream.

S3Storage opens a file by downloading all of it into memory before the first byte can be served: a
200 MB video would sit in a web worker's memory per request. `BucketStorage` opens objects for
reading as the GET's own body stream instead, so the app streams what the bucket sends, chunk by
chunk, and still tells the browser the length. Members get files through the app (not presigned links)
for the reasons given in docs/deploy.md ("Object storage").
"""

from __future__ import annotations

import io

from botocore.exceptions import ClientError
from django.core.files import File
from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class ObjectStream(io.RawIOBase):
    """An S3 GET's body as a read-only file of known size.

    Seeking is allowed only to measure the size (seek to the end and back to where reading is), which
    is what Django's FileResponse does to set Content-Length; any other seek is refused.
    """

    def __init__(self, body, size: int) -> None:
        self._body, self._size = body, size
        self._read = 0  # bytes actually read from the body
        self._position = 0  # where a caller believes it is (the end, while measuring)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._position + offset, io.SEEK_END: self._size + offset}[whence]
        if target not in (self._read, self._size):
            raise io.UnsupportedOperation("a bucket object is read front to back")
        self._position = target
        return target

    def readinto(self, buffer) -> int:
        if self._position != self._read:
            raise io.UnsupportedOperation("read after a seek away from the read position")
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        self._read += len(data)
        self._position = self._read
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class BucketStorage(S3Storage):
    def _open(self, name, mode="rb"):
        if mode != "rb":
            return super()._open(name, mode)
        key = self._normalize_name(clean_name(name))
        try:
            answer = self.connection.meta.client.get_object(Bucket=self.bucket_name, Key=key)
        except ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from None
            raise
        stream = io.BufferedReader(ObjectStream(answer["Body"], answer["ContentLength"]), buffer_size=64 * 1024)
        return File(stream, name)
