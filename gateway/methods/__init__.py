"""Every RPC method group. Importing this package registers all handlers."""

from . import agent, agents, anima, browser, chat, config, logs, outbound, providers, sessions  # noqa: F401
from . import skills, speech, system, update, wizard  # noqa: F401


def _register_other_apps() -> None:
    from cron import methods as _cron  # noqa: F401
    from pairing import methods as _pairing  # noqa: F401


_register_other_apps()
