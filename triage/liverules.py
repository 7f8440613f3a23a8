"""Live rules: an edited ``rules.yaml`` is picked up without a restart.

The daemon asks :meth:`RulesWatcher.check` every few seconds (and SIGHUP forces a
reload). A file that changed is loaded whole and validated; only then does it
replace the running rules. A broken edit is refused with its file, line and reason,
logged and reported to the operator, and the last good rules keep running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from triage import metrics
from triage.errors import RulesError
from triage.rules import Rules, load_rules

log = logging.getLogger(__name__)


class RulesWatcher:
    """Watches one rules file by its modification time and size."""

    def __init__(
        self,
        path: Path,
        apply: Callable[[Rules], None],
        refused: Callable[[RulesError], None] = lambda error: None,
    ) -> None:
        self.path = path
        self.apply = apply
        self.refused = refused
        self.seen = self._stamp()

    def _stamp(self) -> tuple[float, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime, info.st_size)

    def check(self) -> bool:
        """Reload if the file changed since the last look; True when new rules took over."""
        stamp = self._stamp()
        if stamp == self.seen:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Load the file now; on success the new rules replace the running ones."""
        self.seen = self._stamp()
        try:
            rules = load_rules(self.path)
        except RulesError as error:
            log.error("rules not reloaded, the last good rules keep running: %s", error)
            metrics.count_rules_reload(ok=False)
            self.refused(error)
            return False
        self.apply(rules)
        metrics.count_rules_reload(ok=True)
        log.info("rules reloaded from %s (%d rules)", self.path, len(rules))
        return True
