"""What each game told Neuro, bounded: the engine sends it with every request."""

from __future__ import annotations

import collections
from typing import Final

__all__ = ["GameContexts"]

_CUT: Final = " [...]"
_CHUNK: Final = 256
"""Short lines are kept joined up to this many characters: a str object
costs ~50 bytes, so a flood of tiny lines would otherwise keep many times
the character budget alive."""


class GameContexts:
    """Each game's context lines, oldest first, within ``max_chars`` per game.

    Adding a line drops the oldest ones until the game's lines fit (short
    lines go in groups of up to 256 characters); a line longer than the
    whole budget is cut. At most ``max_games`` titles are
    remembered (the one not heard from longest is forgotten first), so
    games naming themselves anew cannot grow it without bound.
    """

    def __init__(self, max_chars: int, *, max_games: int = 1024) -> None:
        if max_chars < 100:
            raise ValueError(f"max_chars: must be >= 100, got {max_chars!r}")
        self.max_chars = max_chars
        self.max_games = max_games
        self._games: collections.OrderedDict[str, collections.deque[str]] = (
            collections.OrderedDict()
        )
        self._sizes: dict[str, int] = {}

    def add(self, game: str, line: str) -> None:
        """Remember ``line`` for ``game`` (dropping its oldest lines to fit)."""
        if len(line) > self.max_chars:
            line = line[: self.max_chars - len(_CUT)] + _CUT
        lines = self._games.get(game)
        if lines is None:
            lines = self._games[game] = collections.deque()
            self._sizes[game] = 0
            while len(self._games) > self.max_games:
                gone, _ = self._games.popitem(last=False)
                del self._sizes[gone]
        else:
            self._games.move_to_end(game)
        size = self._sizes[game] + len(line) + 1
        if lines and len(lines[-1]) + len(line) < _CHUNK and size <= self.max_chars:
            lines[-1] = f"{lines[-1]}\n{line}"  # the same text, one object
        else:
            lines.append(line)
        while size > self.max_chars and len(lines) > 1:
            size -= len(lines.popleft()) + 1
        self._sizes[game] = size

    def text(self, game: str) -> str:
        """The game's lines, oldest first, one per line ("" if none)."""
        lines = self._games.get(game)
        return "" if not lines else "\n".join(lines)

    def chars(self, game: str) -> int:
        """Characters kept for ``game`` (newlines included)."""
        return self._sizes.get(game, 0)

    def forget(self, game: str) -> None:
        """Drop everything kept for ``game``."""
        self._games.pop(game, None)
        self._sizes.pop(game, None)

    def __len__(self) -> int:
        return len(self._games)
