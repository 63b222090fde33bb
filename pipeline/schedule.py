"""``webtext schedule``: run ``webtext refresh`` on a schedule.

``install --cron EXPR`` writes one entry to the user's crontab through python-crontab
(or to ``--tabfile``), tagged with a comment naming the work directory, so that
``show`` and ``remove`` find it again and a second install replaces it. The entry runs
refresh with the same work directory and config, appending to
``<workdir>/logs/refresh.log``; the work-directory lock makes an overlapping run exit
at once (code 75). ``install --systemd`` prints a service and a timer unit instead.
Every path in the command line is shell-quoted.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from .errors import ConfigError
from .remote import default_scratch, is_url, redact


def _where(workdir: Path | str) -> str:
    """The work directory as the refresh command names it: a bucket URL as given, a path absolute."""
    return str(workdir) if is_url(workdir) else str(Path(workdir).resolve())


def _local(workdir: Path | str) -> Path:
    """Where logs go: the work directory, or for a bucket its default scratch mirror."""
    return default_scratch(str(workdir)) if is_url(workdir) else Path(workdir).resolve()


def _shown(workdir: Path | str) -> str:
    """The work directory in comments and descriptions: a bucket URL without credentials."""
    return redact(_where(workdir)) if is_url(workdir) else _where(workdir)


def _tag(workdir: Path | str) -> str:
    return f"webtext refresh {_shown(workdir)}"


def _webtext() -> list[str]:
    exe = Path(sys.executable).parent / "webtext"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("webtext")
    return [found] if found else [sys.executable, "-m", "webtext.pipeline.cli"]


def refresh_argv(workdir: Path, config: Path | None) -> list[str]:
    argv = _webtext() + ["--workdir", _where(workdir)]
    if config:
        argv += ["--config", str(Path(config).resolve())]
    return argv + ["refresh"]


def cron_command(workdir: Path, config: Path | None) -> str:
    log = _local(workdir) / "logs" / "refresh.log"
    return (f"mkdir -p {shlex.quote(str(log.parent))} && "
            f"{shlex.join(refresh_argv(workdir, config))} >> {shlex.quote(str(log))} 2>&1")


NO_CRONTAB_FIX = ("Install cron (Debian/Ubuntu: apt-get install cron; Fedora: dnf install cronie), "
                  "or use --tabfile FILE, or --systemd for a systemd timer")


def _crontab(tabfile: Path | None):
    """The user's crontab (through the ``crontab`` program), or ``tabfile``. A missing
    program or an unreadable file is a ConfigError that says what to install or use."""
    from crontab import CronTab

    try:
        if tabfile:
            Path(tabfile).touch(exist_ok=True)
            return CronTab(tabfile=str(tabfile))
        if shutil.which("crontab") is None:
            raise ConfigError("no crontab program on this machine", NO_CRONTAB_FIX)
        return CronTab(user=True)
    except OSError as e:
        raise ConfigError(f"cannot read the crontab{f' {tabfile}' if tabfile else ''}: {e.strerror or e}",
                          NO_CRONTAB_FIX) from None


def _write(cron) -> None:
    try:
        cron.write()
    except OSError as e:
        raise ConfigError(f"cannot write the crontab: {e.strerror or e}", NO_CRONTAB_FIX) from None


def install(expr: str, workdir: Path, config: Path | None = None, tabfile: Path | None = None) -> str:
    from crontab import CronSlices

    if not CronSlices.is_valid(expr):
        raise ConfigError(f"{expr!r} is not a cron schedule", 'Use five fields, e.g. "0 3 * * *" (03:00 daily)')
    cron = _crontab(tabfile)
    cron.remove_all(comment=_tag(workdir))
    job = cron.new(command=cron_command(workdir, config), comment=_tag(workdir))
    job.setall(expr)
    _write(cron)
    return str(job)


def show(workdir: Path, tabfile: Path | None = None) -> list[str]:
    return [str(j) for j in _crontab(tabfile).find_comment(_tag(workdir))]


def remove(workdir: Path, tabfile: Path | None = None) -> int:
    cron = _crontab(tabfile)
    n = len(list(cron.find_comment(_tag(workdir))))
    cron.remove_all(comment=_tag(workdir))
    _write(cron)
    return n


def systemd_units(workdir: Path, config: Path | None = None, on_calendar: str = "*-*-* 03:00:00") -> tuple[str, str]:
    """(webtext-refresh.service, webtext-refresh.timer) for ``systemctl --user``."""
    wd = _local(workdir)
    service = (
        "[Unit]\nDescription=webtext refresh of " + _shown(workdir) + "\n\n"
        "[Service]\nType=oneshot\n"
        f"ExecStart={shlex.join(refresh_argv(workdir, config))}\n"
        "# 3: nothing new; 75: another run holds the work directory\n"
        "SuccessExitStatus=3 75\n"
        f"StandardOutput=append:{wd / 'logs' / 'refresh.log'}\n"
        f"StandardError=append:{wd / 'logs' / 'refresh.log'}\n"
    )
    timer = (
        "[Unit]\nDescription=Run webtext refresh on a schedule\n\n"
        f"[Timer]\nOnCalendar={on_calendar}\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return service, timer
