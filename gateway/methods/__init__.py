"""Every RPC method group. Importing this package registers all handlers; seed methods without
a handler yet are then registered as "not implemented yet"."""

from . import agent, chat, config, logs, providers, sessions, system  # noqa: F401
from . import browser, outbound, skills, speech, update  # noqa: F401  (issue 6 part B)
from . import agents, anima, wizard  # noqa: F401  (operations, part A)
from .seed import register_pending


def _register_other_apps() -> None:
    from cron import methods as _cron  # noqa: F401
    from pairing import methods as _pairing  # noqa: F401


_register_other_apps()
register_pending()
