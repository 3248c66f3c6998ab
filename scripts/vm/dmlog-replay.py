#!/usr/bin/python3
"""A replayer of the dm-log-writes log (issue 24 item 5).

The format, as the kernel writes it (drivers/md/dm-log-writes.c) and
xfstests reads it (src/log-writes/log-writes.h, log-writes.c, replay-log.c,
read in kdave/xfstests):
- sector 0 of the log: the super block, little-endian
  {u64 magic = 0x6a736677736872, u64 version = 1, u64 nr_entries,
   u32 sectorsize};
- from sector 1 (offset sectorsize): nr_entries entries, each a header
  sector {u64 sector, u64 nr_sectors, u64 flags, u64 data_len, then the
  mark's text (data_len bytes) for a mark, zero padding otherwise}, followed
  for a write by nr_sectors * sectorsize bytes of data (none for a discard,
  a flush without data, or a mark);
- flags: FLUSH 1, FUA 2, DISCARD 4, MARK 8, METADATA 16.
The kernel logs a write only once it is on stable storage: plain writes at
the next flush (in completion order, before the flush entry), FUA writes
when they complete (admin-guide/device-mapper/log-writes.rst, "Log
Ordering"). So the device replayed to a flush or FUA entry is what a power
cut at that instant could leave on disk.

Like replay-log: an entry is valid unless all of flags and nr_sectors are
zero, or a non-mark header is not zero-padded (log_entry_valid); a discard
is replayed as a hole punched in the target (the file's range reads as
zeros, as replay-log's zero_range does where BLKDISCARD is not supported).

  dmlog-replay.py list LOG
      every entry that is a point (flush, FUA) or a mark: "N KIND detail",
      then "entries E points P marks M"
  dmlog-replay.py replay LOG TARGET [--from-entry I] [--to-entry N | --to-mark NAME]
      replay entries I..N (inclusive; default all) onto TARGET
  dmlog-replay.py check LOG TARGET --start-mark A --end-mark B --exec CMD
      replay from the start of the log; between marks A and B, at each flush
      or FUA entry: fsync TARGET, run CMD (with DMLOG_ENTRY, DMLOG_POINT,
      DMLOG_FLAGS in its environment) and go on; prints "point K entry N rc"
      for each; DMLOG_EVERY=k checks only points 1, 1+k, 1+2k, ...
  dmlog-replay.py selftest
      writes logs in the format above and checks list/replay on them
"""
import os
import struct
import subprocess
import sys
import tempfile

MAGIC = 0x6A736677736872
VERSION = 1
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


class LogError(Exception):
    pass


def flag_names(f):
    names = [n for b, n in ((FLUSH, "FLUSH"), (FUA, "FUA"), (DISCARD, "DISCARD"), (MARK, "MARK"), (METADATA, "METADATA")) if f & b]
    rest = f & ~(FLUSH | FUA | DISCARD | MARK | METADATA)
    if rest:
        names.append("UNKNOWN.0x%x" % rest)
    return "|".join(names) or "NONE"


class Entry:
    __slots__ = ("index", "sector", "nr_sectors", "flags", "mark", "data_off")

    def is_point(self):
        return bool(self.flags & (FLUSH | FUA))


def entries(log_path):
    """Yield every entry of the log, checked as replay-log checks them."""
    try:
        f = open(log_path, "rb")
    except OSError as e:
        raise LogError("cannot open the log %s: %s" % (log_path, e.strerror)) from e
    with f:
        head = f.read(SUPER.size)
        if len(head) < SUPER.size:
            raise LogError("%s: too short for a log super block (%d bytes)" % (log_path, len(head)))
        magic, version, nr, ss = SUPER.unpack(head)
        if magic != MAGIC:
            raise LogError("%s: not a dm-log-writes log (magic 0x%x, want 0x%x)" % (log_path, magic, MAGIC))
        if version != VERSION:
            raise LogError("%s: log version %d, this replayer reads %d" % (log_path, version, VERSION))
        if ss < 512 or ss & (ss - 1):
            raise LogError("%s: sector size %d is not a power of two >= 512" % (log_path, ss))
        size = os.fstat(f.fileno()).st_size
        pos = ss
        for i in range(nr):
            f.seek(pos)
            sec = f.read(ss)
            if len(sec) < ss:
                raise LogError("%s: entry %d at byte %d is past the end (the super block says %d entries)" % (log_path, i, pos, nr))
            sector, nsec, flags, dlen = ENTRY.unpack_from(sec)
            if not flags and not nsec:
                raise LogError("%s: malformed entry %d at sector %d (all zero)" % (log_path, i, pos // ss))
            if flags != MARK and sec[ENTRY.size] != 0:
                raise LogError("%s: malformed entry %d at sector %d (header not zero-padded)" % (log_path, i, pos // ss))
            e = Entry()
            e.index, e.sector, e.nr_sectors, e.flags = i, sector, nsec, flags
            e.mark = None
            if flags & MARK:
                if dlen > ss - ENTRY.size:
                    raise LogError("%s: mark of entry %d longer than its sector" % (log_path, i))
                e.mark = sec[ENTRY.size:ENTRY.size + dlen].split(b"\0", 1)[0].decode("utf-8", "replace")
            pos += ss
            e.data_off = pos
            if nsec and not flags & DISCARD:
                pos += nsec * ss
                if pos > size:
                    raise LogError("%s: entry %d's data ends past the end of the log" % (log_path, i))
            yield ss, e, f


def punch(fd, off, length):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length) != 0:
        # Not a file that can punch holes (a block device): write zeros.
        zero = bytes(1 << 20)
        while length:
            n = min(length, len(zero))
            os.pwrite(fd, zero[:n], off)
            off += n
            length -= n


def apply(e, ss, logf, tfd):
    if not e.nr_sectors:
        return
    off, length = e.sector * ss, e.nr_sectors * ss
    if e.flags & DISCARD:
        punch(tfd, off, length)
        return
    logf.seek(e.data_off)
    left = length
    while left:
        buf = logf.read(min(left, 8 << 20))
        if not buf:
            raise LogError("short read of entry %d's data" % e.index)
        os.pwrite(tfd, buf, off)
        off += len(buf)
        left -= len(buf)


def describe(e, ss):
    if e.flags & MARK:
        return "%d mark %s" % (e.index, e.mark)
    kind = "fua" if e.flags & FUA and not e.flags & FLUSH else "flush"
    if e.flags & FLUSH and e.flags & FUA:
        kind = "flush+fua"
    return "%d %s sector %d +%d (%s)" % (e.index, kind, e.sector, e.nr_sectors, flag_names(e.flags))


def cmd_list(log):
    n = pts = marks = 0
    for ss, e, _ in entries(log):
        n += 1
        if e.flags & MARK:
            marks += 1
            print(describe(e, ss))
        elif e.is_point():
            pts += 1
            print(describe(e, ss))
    print("entries %d points %d marks %d" % (n, pts, marks))


def open_target(path):
    try:
        return os.open(path, os.O_WRONLY)
    except OSError as e:
        raise LogError("cannot open the target %s: %s" % (path, e.strerror)) from e


def cmd_replay(log, target, from_entry=0, to_entry=None, to_mark=None):
    tfd = open_target(target)
    last = None
    found = to_mark is None
    try:
        for ss, e, f in entries(log):
            if to_entry is not None and e.index > to_entry:
                break
            if e.index >= from_entry:
                apply(e, ss, f, tfd)
                last = e.index
            if to_mark is not None and e.mark == to_mark:
                found = True
                break
        os.fsync(tfd)
    finally:
        os.close(tfd)
    if not found:
        raise LogError("no mark %r in %s" % (to_mark, log))
    print("replayed to entry %s" % last)
    return last


def cmd_check(log, target, start_mark, end_mark, command, every=1):
    tfd = open_target(target)
    state = "before"
    k = 0
    results = []

    def run(e, k):
        os.fsync(tfd)
        env = dict(os.environ, DMLOG_ENTRY=str(e.index), DMLOG_POINT=str(k), DMLOG_FLAGS=flag_names(e.flags))
        rc = subprocess.call(command, shell=True, env=env)
        print("point %d entry %d rc %d" % (k, e.index, rc), flush=True)
        results.append(rc)

    try:
        for ss, e, f in entries(log):
            apply(e, ss, f, tfd)
            if e.mark is not None:
                if state == "before" and e.mark == start_mark:
                    state = "in"
                elif state == "in" and e.mark == end_mark:
                    state = "after"
                    break
                continue
            if state == "in" and e.is_point():
                k += 1
                if (k - 1) % every == 0:
                    run(e, k)
    finally:
        os.close(tfd)
    if state == "before":
        raise LogError("no mark %r in %s" % (start_mark, log))
    if state == "in":
        raise LogError("no mark %r after %r in %s" % (end_mark, start_mark, log))
    print("points %d checked %d" % (k, len(results)))
    return results


# ---- selftest: logs written in the documented format -------------------

def write_log(path, ss, items):
    """items: ("w", sector, bytes, flags) | ("d", sector, nsec) | ("f", flags) | ("m", text)."""
    with open(path, "wb") as f:
        f.write(SUPER.pack(MAGIC, VERSION, len(items), ss).ljust(ss, b"\0"))
        for it in items:
            if it[0] == "w":
                _, sector, data, fl = it
                assert len(data) % ss == 0
                f.write(ENTRY.pack(sector, len(data) // ss, fl, 0).ljust(ss, b"\0"))
                f.write(data)
            elif it[0] == "d":
                f.write(ENTRY.pack(it[1], it[2], DISCARD, 0).ljust(ss, b"\0"))
            elif it[0] == "f":
                f.write(ENTRY.pack(0, 0, it[1], 0).ljust(ss, b"\0"))
            else:
                t = it[1].encode()
                f.write(ENTRY.pack(0, 0, MARK, len(t)).ljust(ENTRY.size, b"\0"))
                f.write(t.ljust(ss - ENTRY.size, b"\0"))


def selftest():
    ss = 512
    blk = lambda c, n=1: bytes([c]) * (ss * n)
    with tempfile.TemporaryDirectory() as d:
        log, tgt = os.path.join(d, "log"), os.path.join(d, "t")
        write_log(log, ss, [
            ("w", 0, blk(0x41, 2), 0), ("f", FLUSH), ("m", "one"),
            ("w", 8, blk(0x42), FUA), ("m", "two"),
            ("w", 16, blk(0x43, 4), 0), ("d", 17, 2), ("f", FLUSH), ("m", "three"),
        ])
        def fresh():
            with open(tgt, "wb") as t:
                t.truncate(32 * ss)
        def img():
            with open(tgt, "rb") as t:
                return t.read()
        def want(parts):
            b = bytearray(32 * ss)
            for sec, data in parts:
                b[sec * ss:sec * ss + len(data)] = data
            return bytes(b)
        A, B = (0, blk(0x41, 2)), (8, blk(0x42))
        C = (16, blk(0x43) + bytes(2 * ss) + blk(0x43))
        fresh(); cmd_replay(log, tgt, to_mark="one"); assert img() == want([A]), "to mark one"
        fresh(); cmd_replay(log, tgt, to_mark="two"); assert img() == want([A, B]), "to mark two"
        fresh(); cmd_replay(log, tgt); assert img() == want([A, B, C]), "whole log, discard honoured"
        fresh(); cmd_replay(log, tgt, to_entry=0); cmd_replay(log, tgt, from_entry=1, to_entry=3)
        assert img() == want([A, B]), "in two parts"
        fresh()
        out = os.path.join(d, "points")
        r = cmd_check(log, tgt, "one", "three", "echo $DMLOG_POINT $DMLOG_ENTRY $DMLOG_FLAGS >> %s; cmp -s -n %d %s /dev/null; exit 0" % (out, 0, tgt))
        with open(out) as o:
            assert o.read().split("\n")[:2] == ["1 3 FUA", "2 7 FLUSH"], "points between the marks"
        assert r == [0, 0]
        # Malformed logs are refused with the reason.
        for bad, why in ((b"", "too short"), (b"\0" * 512, "not a dm-log-writes log"),
                         (SUPER.pack(MAGIC, 2, 0, 512).ljust(512, b"\0"), "version 2"),
                         (SUPER.pack(MAGIC, 1, 3, 512).ljust(512, b"\0") + ENTRY.pack(0, 1, 0, 0).ljust(512, b"\0"), "past the end"),
                         (SUPER.pack(MAGIC, 1, 1, 512).ljust(512, b"\0") + bytes(512), "all zero")):
            with open(log, "wb") as f:
                f.write(bad)
            try:
                list(entries(log))
            except LogError as e:
                assert why in str(e), (why, str(e))
            else:
                raise AssertionError("accepted a malformed log: " + why)
        try:
            list(entries(os.path.join(d, "absent")))
        except LogError as e:
            assert "cannot open the log" in str(e)
        else:
            raise AssertionError("an absent log")
    print("dmlog-replay selftest: OK")


def main(argv):
    import argparse
    p = argparse.ArgumentParser(prog="dmlog-replay.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("list"); a.add_argument("log")
    a = sub.add_parser("replay"); a.add_argument("log"); a.add_argument("target")
    a.add_argument("--from-entry", type=int, default=0); a.add_argument("--to-entry", type=int)
    a.add_argument("--to-mark")
    a = sub.add_parser("check"); a.add_argument("log"); a.add_argument("target")
    a.add_argument("--start-mark", required=True); a.add_argument("--end-mark", required=True)
    a.add_argument("--exec", dest="command", required=True)
    sub.add_parser("selftest")
    o = p.parse_args(argv)
    try:
        if o.cmd == "list":
            cmd_list(o.log)
        elif o.cmd == "replay":
            cmd_replay(o.log, o.target, o.from_entry, o.to_entry, o.to_mark)
        elif o.cmd == "check":
            cmd_check(o.log, o.target, o.start_mark, o.end_mark, o.command, int(os.environ.get("DMLOG_EVERY", "1")))
        else:
            selftest()
    except LogError as e:
        print("dmlog-replay: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
