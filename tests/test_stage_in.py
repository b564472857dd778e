"""A restore is a use: the next policy cycle must not release what a user just staged in."""

from __future__ import annotations

import json
import os
import time

from unattended import heat, make_file, states, tiering, write_setup

RELEASE_COLD = ('[[rules]]\nname = "cold"\nmatch = \'type == "file" and atime_age > 30d\'\naction = "release"\n'
                '[safety]\nmin_age = "0s"\n')
DAY_NS = 86400 * 10**9


def test_a_restored_file_is_not_released_again_by_the_next_cycle(tmp_path):
    cfg = write_setup(tmp_path, RELEASE_COLD)
    hot = tmp_path / "hot"
    long_ago = time.time_ns() - 100 * DAY_NS
    for i in range(3):
        make_file(hot / f"set/shard-{i}", 50_000 + i)
        os.utime(hot / f"set/shard-{i}", ns=(long_ago, long_ago))

    first = tiering("run", "--json", "-c", str(cfg))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["actions"] == {"release": {"done": 3}}

    before = time.time_ns()
    staged = tiering("restore", "-c", str(cfg), str(hot / "set/shard-0"))
    assert staged.returncode == 0, staged.stderr
    st = os.stat(hot / "set/shard-0")
    assert st.st_size == 50_000 and st.st_atime_ns >= before  # used just now
    assert st.st_mtime_ns == long_ago  # the file's own modification time is kept
    assert heat(tmp_path / "state/catalog.db", b"set/shard-0") >= 1  # and the catalog counts the use
    assert heat(tmp_path / "state/catalog.db", b"set/shard-1") == 0

    second = tiering("run", "--json", "-c", str(cfg))
    assert second.returncode == 0, second.stderr
    assert os.stat(hot / "set/shard-0").st_size == 50_000  # still staged in
    assert states(tmp_path / "state/catalog.db")[b"set/shard-0"] == "archived"
