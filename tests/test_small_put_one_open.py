"""A small file goes up to S3 from the event loop through ONE open of it: asking for holes and reading
its bytes share the open. On a networked hot tier each open of the source is three round trips (open,
flush, release): two opens made an archive of a 64 KiB file on a SeaweedFS FUSE mount 23 FUSE requests,
one makes it 20. Counted on a real SeaweedFS, with the opens of the source seen by Python's audit hook
in a child process (so the hook never outlives the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

from conftest import S3_BUCKET, S3_KEY, S3_SECRET

_CHILD = textwrap.dedent("""
    import asyncio, json, os, sys
    from tiering.stores import open_store
    from tiering.stores.base import FileMeta

    endpoint, url, key, secret, folder = sys.argv[1:6]
    opens = []
    store = open_store(url, {"endpoint": endpoint, "access_key_id": key, "secret_access_key": secret})
    results = {}
    for name, make in (("dense", lambda f: f.write(os.urandom(65536))),
                       ("sparse", lambda f: (f.seek(1 << 20), f.write(b"tail")))):
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            make(f)
        meta = FileMeta.from_stat(os.stat(path), name)
        sys.addaudithook(lambda event, args, path=path: event == "open" and args and str(args[0]) == path
                         and opens.append(name))
        info = asyncio.run(store.put_file_async(path, name, meta))
        results[name] = [opens.count(name), info.size, bool(info.meta and info.meta.sparse)]
    store.close()
    print(json.dumps(results))
""")


def test_a_small_put_from_the_event_loop_opens_its_source_once(seaweed, tmp_path):
    url = f"s3://{S3_BUCKET}/one-open-{uuid.uuid4().hex[:12]}"
    out = subprocess.run([sys.executable, "-c", _CHILD, seaweed.endpoint, url, S3_KEY, S3_SECRET, str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["dense"] == [1, 65536, False]
    assert seen["sparse"] == [1, (1 << 20) + 4, True]  # holes found in the same open that read the bytes
