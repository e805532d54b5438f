#!/usr/bin/env python3
"""Record a program on a pseudo-terminal and write what the terminal showed as text frames.

Usage: termrec.py [options] -- PROGRAM ARGS...

The program runs on a real pseudo-terminal of --cols x --rows (TERM=xterm-256color, COLUMNS and
LINES set, NO_COLOR unset), so it draws as it would for a person; --answer PROMPT=TEXT types
TEXT and Enter once PROMPT has been shown (TEXT `^C` presses Ctrl-C instead). Everything it writes is replayed through a small
terminal emulator (carriage returns, line feeds, backspace, tabs, and the CSI cursor, save and
erase sequences progress bars use; colours and other modes are dropped) and --out gets --frames
screens taken at even times between the first answer and the end (those that differ from the
screen at the answer, the final one and each other), then the final screen.

Exits non-zero, with what the terminal showed, if the program exits with another code than
--code (0) or runs past --timeout,
or if there is no such frame (nothing was drawn between the answer and the end).
"""

import argparse
import codecs
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time


class Screen:
    """The text of a terminal: a grid of rows x cols, the cursor, and what scrolled off the top."""

    def __init__(self, cols, rows):
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.scrolled = []
        self.row = self.col = 0
        self.saved = (0, 0)
        # xterm's deferred wrap: a character in the last column wraps only when another follows.
        self.wrap_next = False
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data):
        text = self.pending + self.decoder.decode(data)
        self.pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                end = self.escape(text, i)
                if end is None:
                    # An incomplete sequence: keep it for the next chunk.
                    self.pending = text[i:]
                    return
                i = end
                continue
            if ord(ch) < 0x20 or ch == "\x7f":
                self.control(ch)
            else:
                self.put(ch)
            i += 1

    def put(self, ch):
        if self.wrap_next:
            self.col, self.wrap_next = 0, False
            self.line_feed()
        self.grid[self.row][self.col] = ch
        if self.col == self.cols - 1:
            self.wrap_next = True
        else:
            self.col += 1

    def control(self, ch):
        if ch == "\r":
            self.col = 0
        elif ch == "\n":
            self.line_feed()
        elif ch == "\b":
            self.col = max(0, self.col - 1)
        elif ch == "\t":
            self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
        else:
            return
        self.wrap_next = False

    def line_feed(self):
        if self.row == self.rows - 1:
            self.scrolled.append(self.grid.pop(0))
            self.grid.append([" "] * self.cols)
        else:
            self.row += 1

    def escape(self, text, i):
        """Apply the escape sequence at text[i]; the index after it, or None if incomplete."""
        if i + 1 >= len(text):
            return None
        kind = text[i + 1]
        if kind == "[":
            j = i + 2
            while j < len(text) and not ("\x40" <= text[j] <= "\x7e"):
                j += 1
            if j >= len(text):
                return None
            self.csi(text[i + 2 : j], text[j])
            return j + 1
        if kind == "]":
            # An operating system command (a window title), ended by BEL or ESC \.
            for j in range(i + 2, len(text)):
                if text[j] == "\x07":
                    return j + 1
                if text[j] == "\x1b" and j + 1 < len(text) and text[j + 1] == "\\":
                    return j + 2
            return None
        if kind == "7":
            self.saved = (self.row, self.col)
        elif kind == "8":
            self.row, self.col = self.saved
            self.wrap_next = False
        elif kind in "()":
            # A character set designation: one more character.
            return i + 3 if i + 2 < len(text) else None
        return i + 2

    def csi(self, params, final):
        if params.startswith(("?", ">", "=")):
            return  # private modes: cursor visibility, bracketed paste, ...
        args = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        n = max(1, args[0]) if args else 1
        first = args[0] if args else 0
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "E":
            self.row, self.col = min(self.rows - 1, self.row + n), 0
        elif final == "F":
            self.row, self.col = max(0, self.row - n), 0
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            row = args[0] if args else 1
            col = args[1] if len(args) > 1 else 1
            self.row = min(self.rows - 1, max(1, row) - 1)
            self.col = min(self.cols - 1, max(1, col) - 1)
        elif final == "d":
            self.row = min(self.rows - 1, n - 1)
        elif final == "s":
            self.saved = (self.row, self.col)
        elif final == "u":
            self.row, self.col = self.saved
        elif final == "X":
            line = self.grid[self.row]
            end = min(self.cols, self.col + n)
            line[self.col : end] = [" "] * (end - self.col)
        elif final == "P":
            line = self.grid[self.row]
            del line[self.col : self.col + n]
            line.extend([" "] * (self.cols - len(line)))
        elif final == "K":
            line = self.grid[self.row]
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(first, (0, self.cols))
            line[start:end] = [" "] * (end - start)
        elif final == "J":
            if first == 0:
                self.csi("0", "K")
                rows = range(self.row + 1, self.rows)
            elif first == 1:
                self.csi("1", "K")
                rows = range(0, self.row)
            else:
                rows = range(self.rows)
            for r in rows:
                self.grid[r] = [" "] * self.cols
        else:
            return  # colours (m) and anything else that does not move text
        self.wrap_next = False

    def text(self):
        """Everything shown since the start: scrolled-off lines and the screen, without the
        blank lines at the end."""
        lines = ["".join(line).rstrip() for line in self.scrolled + self.grid]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)


def record(argv, cols, rows, answers, timeout):
    """Run argv on a new pseudo-terminal: (exit code, [(seconds, bytes)], seconds of the last
    answer, the prompts never shown)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
    env.pop("NO_COLOR", None)
    start = time.monotonic()
    child = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        # The terminal becomes the program's controlling terminal, so Ctrl-C and job control
        # work as at a real one.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    # Frames start at the first answer: later ones (Ctrl-C, a second question) are part of
    # what they show.
    chunks, shown, answered_at = [], b"", None
    pending = list(answers)
    while True:
        if time.monotonic() - start > timeout:
            child.kill()
            child.wait()
            return None, chunks, (answered_at or start) - start, [p for p, _ in pending]
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            data = b""
        if not data:
            break
        now = time.monotonic()
        chunks.append((now - start, data))
        shown += data
        if pending and pending[0][0].encode() in shown:
            prompt, reply = pending.pop(0)
            shown = b""
            # `^C` is the key itself (the terminal turns it into SIGINT), not a typed line.
            os.write(master, b"\x03" if reply == "^C" else reply.encode() + b"\r")
            answered_at = answered_at or now
    os.close(master)
    return child.wait(), chunks, (answered_at or start) - start, [p for p, _ in pending]


def frames(chunks, cols, rows, prompt, since, count):
    """The screen at `since`, at `count` even times between `since` and the end, and at the
    end: [(seconds, text)]."""
    screen = Screen(cols, rows)
    if prompt:
        screen.feed(prompt.encode() + b"\r\n")
    end = chunks[-1][0] if chunks else since
    times = [since + (end - since) * k / (count + 1) for k in range(0, count + 1)]
    taken = []
    for at, data in chunks:
        # A screen is taken as it stands just before the first output after its time.
        while times and at > times[0]:
            taken.append((times.pop(0), screen.text()))
        screen.feed(data)
    taken.extend((at, screen.text()) for at in times)
    taken.append((end, screen.text()))
    return taken


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cols", type=int, default=96)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--answer", action="append", default=[], metavar="PROMPT=TEXT")
    parser.add_argument("--frames", type=int, default=3, help="screens before the final one")
    parser.add_argument("--prompt", default="", help="a shell prompt line shown first")
    parser.add_argument("--header", default="", help="text written before the frames")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--code", type=int, default=0, help="the exit code expected")
    parser.add_argument("--out", required=True)
    parser.add_argument("argv", nargs="+")
    args = parser.parse_args()
    answers = [tuple(a.split("=", 1)) for a in args.answer]

    code, chunks, since, unseen = record(args.argv, args.cols, args.rows, answers, args.timeout)
    shots = frames(chunks, args.cols, args.rows, args.prompt, since, args.frames)
    final = shots[-1][1]
    if code != args.code:
        what = "ran past the timeout" if code is None else f"exited with {code}"
        if unseen:
            what += f" (it never showed {unseen[0]!r})"
        sys.exit(f"termrec: {args.argv[0]} {what}; the terminal showed:\n{final}")
    # Frames that show something drawn after the answer, each unlike the one before.
    between = []
    for shot in shots[1:-1]:
        seen = [shots[0][1], final] + [text for _, text in between[-1:]]
        if shot[1] not in seen:
            between.append(shot)
    if not between:
        sys.exit(f"termrec: nothing was drawn between the answer and the end:\n{final}")

    out = [args.header.rstrip("\n") + "\n\n"] if args.header else []
    for at, text in between:
        out.append(f"--- after {at:.1f} s ---\n{text}\n\n")
    out.append(f"--- the end, after {shots[-1][0]:.1f} s ---\n{final}\n")
    with open(args.out, "w") as f:
        f.write("".join(out))


if __name__ == "__main__":
    main()
