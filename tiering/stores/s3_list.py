"""Listing an S3 prefix whole, and finding and aborting unfinished multipart uploads."""

from __future__ import annotations

from collections.abc import Iterator

import obstore
import obstore.exceptions as oe

from tiering.stores.base import ObjectInfo
from tiering.stores.keys import join_key, split_key
from tiering.stores.listing import whole_listing
from tiering.stores.s3_listpage import list_page
from tiering.stores.s3_uploads import abort_upload, list_uploads


class S3Listing:
    """Mixin of ``S3Store``: ``list`` and ``cleanup_incomplete``."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, or an error: never a listing cut short (``stores.listing``).

        A failed page is asked for again from just after the last object seen
        (obstore's ``offset``, S3's ``start-after``), each page under the retry
        policy: re-asking the same stream would get its end, not the page.
        Why obstore and not our own ListObjectsV2: its paging and XML parsing
        are proven, and ``offset`` is all a resume needs.
        """
        return whole_listing(self.url, prefix, self._list(prefix))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        # object_store lists whole "directories"; narrow to the string prefix here.
        directory = join_key(self.prefix, prefix.rsplit("/", 1)[0]) if "/" in prefix else self.prefix
        stream, after = None, None  # ``after``: the full name of the last object seen

        def page():
            nonlocal stream
            try:
                if stream is None:
                    stream = obstore.list(self._obs, directory or None, offset=after, chunk_size=1000)
                return next(stream, None)
            except (oe.InvalidPathError, ValueError) as exc:
                if not _unparsable(exc, stream):
                    stream = None
                    raise
            except BaseException:
                stream = None  # a failed stream is spent: a retry starts a new one after ``after``, never its end
                raise
            # A name obstore cannot hold, listed or to start after (``s3_listpage``): this page raw, then go on.
            stream = None
            return list_page(self._endpoint, self._creds, self.bucket, directory, after, url=self.url) or None

        while True:
            batch = self._call(prefix, page)
            if batch is None:
                return
            for item in batch:
                after = item["path"]
                key = split_key(self.prefix, item["path"])
                if key.startswith(prefix):
                    yield ObjectInfo(key, item["size"], etag=(item.get("e_tag") or "").strip('"'))

    def cleanup_incomplete(self, key: str | None = None) -> int:
        """Abort unfinished multipart uploads of ``key`` (or under the whole prefix)."""
        prefix = self._name(key) if key else (self.prefix + "/" if self.prefix else "")
        uploads = list_uploads(self._endpoint, self._creds, self.bucket, prefix, url=self.url, retry=self.retry)
        mine = [(name, upload) for name, upload in uploads if key is None or name == prefix]
        for name, upload_id in mine:
            self.retry.call(lambda: abort_upload(self._endpoint, self._creds, self.bucket, name, upload_id,
                                                 url=self.url))
        return len(mine)


def _unparsable(exc: Exception, stream) -> bool:
    """Whether obstore failed on a name it cannot parse: one listed (``InvalidPathError``), or the offset to
    start after (a ``ValueError`` before any stream exists)."""
    return isinstance(exc, oe.InvalidPathError) or (stream is None and "parse path" in str(exc).lower())
