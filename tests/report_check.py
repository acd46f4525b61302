#!/usr/bin/python3
"""Checks what a headless chromium made of an flcache report (tests/test_report.c).

  report_check.py dom DOM.html ROUNDS CLIENTS   the DOM chromium dumped (--dump-dom):
        every section has a plot, and each plot as many marks as the job has
        rounds and clients (counted from the elements, not from any attribute
        the page states about itself)
  report_check.py png SHOT.png MIN_STDDEV        the screenshot is not blank: the
        standard deviation of its grey levels is above MIN_STDDEV (0..255)
  report_check.py console LOG                    no console message in chromium's
        log (--enable-logging=stderr writes them as "CONSOLE" lines)

Prints one line per check ("ok - ..." or "not ok - ...") and exits 1 if one
failed. Only Debian's python3 standard library: html.parser, zlib, struct.
"""
import struct
import sys
import zlib
from html.parser import HTMLParser


class Page(HTMLParser):
    """Sections, their plots, and the marks of each plot."""

    def __init__(self):
        super().__init__()
        self.sections = {}   # id -> list of plots
        self.section = None
        self.plot = None
        self.stack = []      # open elements inside a plot: (tag, attrs)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.section = a.get("id")
            self.sections[self.section] = []
        elif tag == "svg" and "plot" in a.get("class", "").split():
            self.plot = {"kind": a.get("data-kind"), "points": [], "stacks": [],
                         "cells": [], "rows": [], "bars": []}
            if self.section is not None:
                self.sections[self.section].append(self.plot)
        elif self.plot is not None:
            cls = a.get("class", "")
            if tag == "circle" and "data-r" in a:
                self.plot["points"].append(a["data-r"])
            elif tag == "circle" and "data-c" in a:
                self.plot["points"].append(a["data-c"])
            elif tag == "g" and cls == "stack":
                self.plot["stacks"].append(a.get("data-r"))
            elif tag == "g" and "data-c" in a:
                self.plot["rows"].append(a["data-c"])
            elif tag == "rect" and cls.startswith("h") and "data-r" in a:
                self.plot["cells"].append((self.plot["rows"][-1] if self.plot["rows"] else None,
                                           a["data-r"]))
            elif tag == "rect" and "data-c" in a:
                self.plot["bars"].append(a["data-c"])

    def handle_endtag(self, tag):
        if tag == "svg":
            self.plot = None
        elif tag == "section":
            self.section = None


failed = 0


def check(ok, what):
    global failed
    print(("    ok - " if ok else "    not ok - ") + what)  # a case's checks are indented
    failed += 0 if ok else 1


def check_dom(path, rounds, clients):
    p = Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    expect = ["accuracy", "loss", "participation", "time", "cost", "outliers", "map",
              "contribution", "staleness"]
    for sid in expect:
        check(sid in p.sections, "section %s is on the page" % sid)
    for sid in expect[:-1]:  # staleness: no async data, a sentence instead
        plots = p.sections.get(sid, [])
        check(len(plots) >= 1, "section %s has a plot (%d)" % (sid, len(plots)))
    s = p.sections
    def first(sid):
        return s.get(sid, [None])[0] if s.get(sid) else None
    acc = first("accuracy")
    n = len(acc["points"]) if acc else -1
    check(n == rounds and len(set(acc["points"])) == rounds,
          "accuracy: %d points for %d rounds" % (n, rounds))
    loss = first("loss")
    n = len(loss["points"]) if loss else -1
    check(n == 2 * rounds, "loss: %d points for 2 series x %d rounds" % (n, rounds))
    for sid in ("participation", "time"):
        pl = first(sid)
        n = len(set(pl["stacks"])) if pl else -1
        check(n == rounds, "%s: %d stacked bars for %d rounds" % (sid, n, rounds))
    cost = s.get("cost", [])
    n = len(cost[0]["stacks"]) if cost else -1
    m = len(cost[1]["points"]) if len(cost) > 1 else -1
    check(n == rounds and m == rounds,
          "cost: %d bars and %d cumulative points for %d rounds" % (n, m, rounds))
    heat = first("outliers")
    rows = len(heat["rows"]) if heat else -1
    cells = len(heat["cells"]) if heat else -1
    cols = len(set(r for _, r in heat["cells"])) if heat else -1
    check(rows == clients and cols == rounds and cells == rounds * clients,
          "outliers heat map: %d client rows, %d round columns, %d cells (want %d x %d)"
          % (rows, cols, cells, clients, rounds))
    mp = first("map")
    n = len(set(mp["points"])) if mp else -1
    check(n == clients, "map: %d client points for %d clients" % (n, clients))
    ct = first("contribution")
    n = len(set(ct["bars"])) if ct else -1
    check(n == clients, "contribution: %d client bars for %d clients" % (n, clients))


def png_grey(path):
    """Grey levels of an 8-bit RGB/RGBA/grey PNG (non-interlaced)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        ln, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + ln]
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, inter = struct.unpack(">IIBBBBB", body)
            if depth != 8 or inter != 0 or ctype not in (0, 2, 6):
                raise ValueError("unsupported PNG (depth %d, type %d)" % (depth, ctype))
            bpp = {0: 1, 2: 3, 6: 4}[ctype]
        elif typ == b"IDAT":
            idat += body
        pos += 12 + ln
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    out = []
    i = 0
    for _ in range(h):
        ft = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ft == 1:
                line[x] = (line[x] + a) & 255
            elif ft == 2:
                line[x] = (line[x] + b) & 255
            elif ft == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ft == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pr) & 255
        prev = line
        for x in range(0, stride, bpp * 4):  # every 4th pixel is plenty
            px = line[x:x + 3] if bpp >= 3 else line[x:x + 1] * 3
            out.append((px[0] * 299 + px[1] * 587 + px[2] * 114) // 1000)
    return w, h, out


def check_png(path, min_sd):
    try:
        w, h, g = png_grey(path)
    except (OSError, ValueError, zlib.error) as e:
        check(False, "screenshot %s decodes: %s" % (path, e))
        return
    mean = sum(g) / len(g)
    sd = (sum((v - mean) ** 2 for v in g) / len(g)) ** 0.5
    check(sd > min_sd, "screenshot %dx%d is not blank: grey-level stddev %.1f > %.1f"
          % (w, h, sd, min_sd))


def check_console(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln.strip() for ln in f if "CONSOLE" in ln]
    check(not lines, "no console messages (%d)%s" % (len(lines),
                                                     ": " + lines[0][:200] if lines else ""))


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "dom" and len(sys.argv) == 5:
        check_dom(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif what == "png" and len(sys.argv) == 4:
        check_png(sys.argv[2], float(sys.argv[3]))
    elif what == "console" and len(sys.argv) == 3:
        check_console(sys.argv[2])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(1 if failed else 0)
