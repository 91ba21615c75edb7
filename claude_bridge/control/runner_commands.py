"""Commands for host runners (issue 15): ``new``, ``resume``, ``hosts`` in the bot's chat;
``resume``, ``interrupt``, ``end`` in a session's room.

Starting a process on someone's machine is the most powerful thing the bridge does, so ``new``,
``resume`` and ``end`` need an admin, or an operator whom ``bridge.launch`` grants the project;
``interrupt`` needs an operator. A runner's own ``--accept-from`` narrows further, and is checked
here as well as on the host. Every job is stored before the command is answered, and recorded
in the audit log (who, what, where); a host that is offline is said to be at once, and nothing
is queued for it.
"""

from __future__ import annotations

import argparse
import uuid

from claude_bridge.config import PermissionLevel
from claude_bridge.control.commands import (
    MANAGEMENT,
    THREAD,
    Caller,
    CommandError,
    CommandSet,
    Reply,
)
from claude_bridge.control.framing import prompt_command
from claude_bridge.control.info_commands import InfoCommands, ago, clock, link
from claude_bridge.control.parts import Parts
from claude_bridge.control.runner_rooms import RunnerRooms, attach_hint
from claude_bridge.control.runner_wire import HOST, project_problem
from claude_bridge.control.runners import Runners
from claude_bridge.ids import thread_id_for
from claude_bridge.matrix.client import MatrixError
from claude_bridge.room_state import resume_command
from claude_bridge.store import Thread
from claude_bridge.store.runner_jobs import RunnerJob
from claude_bridge.store.runners import Runner

MAX_PROMPT = 20_000
NO_PANE = (
    "This session was not started by a host runner, so there is no pane to {what}. "
    "`!claude stop` stops it at its next hook (tool call or turn end)."
)


class RunnerCommands:
    def __init__(
        self,
        parts: Parts,
        commands: CommandSet,
        runners: Runners,
        rooms: RunnerRooms,
        info: InfoCommands,
    ) -> None:
        self.p = parts
        self.runners = runners
        self.rooms = rooms
        self.info = info
        op = PermissionLevel.OPERATOR
        add = commands.add
        add(
            "new",
            "Start a Claude Code session on a host runner: `new PROJECT [on HOST] PROMPT` "
            "(admin, or bridge.launch).",
            self.new,
            level=op,
            rooms=(MANAGEMENT,),
            arguments=[
                (("project",), {"help": "a project the host's runner offers"}),
                (("words",), {"nargs": argparse.REMAINDER, "help": "[on HOST] PROMPT"}),
            ],
        )
        add(
            "resume",
            "Resume an ended session on the host that ran it, in its room (admin, or "
            "bridge.launch).",
            self.resume,
            level=op,
            arguments=[(("session",), {"nargs": "?", "help": "(bot chat) session or thread"})],
        )
        # Not in a session's room: everyone in it (viewers too) would read the answer, which
        # names the sessions the asker may see.
        add(
            "hosts",
            "The host runners: online or not, projects, sessions.",
            self.hosts,
            level=op,
            rooms=(MANAGEMENT,),
        )
        add(
            "interrupt",
            "Interrupt Claude's turn now (Escape in its tmux pane; runner sessions only).",
            self.interrupt,
            level=op,
            rooms=(THREAD,),
        )
        add(
            "end",
            "End this runner session: /exit, killed after a timeout (admin, or bridge.launch).",
            self.end,
            level=op,
            rooms=(THREAD,),
        )

    # --- checks -------------------------------------------------------------------------------

    def _may_launch(self, caller: Caller, project: str | None, what: str) -> None:
        if not self.p.roles.permissions.may_launch(caller.user_id, project):
            have = caller.level.value if caller.level else "no level"
            raise CommandError(
                f"`{what}` needs admin, or an operator granted project `{project or '?'}` in "
                f"bridge.launch; you are {have}."
            )

    def _offline(self, runner: Runner) -> str:
        return (
            f"host `{runner.host}` is offline since {clock(runner.last_seen)} "
            f"({ago(runner.last_seen)})"
        )

    def _usable(self, runner: Runner, caller: Caller) -> None:
        if not self.runners.online(runner):
            raise CommandError(f"{self._offline(runner)}: nothing was queued.")
        if not runner.accepts(caller.user_id):
            raise CommandError(
                f"The runner on `{runner.host}` does not take jobs from {caller.user_id} "
                "(its --accept-from)."
            )

    def _pick(self, project: str, host: str | None) -> Runner:
        runners = self.runners.all()
        if host is not None:
            runners = [r for r in runners if r.host == host]
            if not runners:
                known = ", ".join(f"`{h}`" for h in sorted({r.host for r in self.runners.all()}))
                raise CommandError(
                    f"No runner has polled from host `{host}`. Hosts: {known or 'none'}."
                )
        offering = [r for r in runners if project in r.projects]
        if not offering:
            where = f"on `{host}`" if host else "on any host"
            known = ", ".join(f"`{p}`" for p in sorted({p for r in runners for p in r.projects}))
            raise CommandError(
                f"No runner {where} offers project `{project}`. Projects: {known or 'none'}."
            )
        online = [r for r in offering if self.runners.online(r)]
        if not online:
            latest = max(offering, key=lambda r: r.last_seen)
            raise CommandError(f"{self._offline(latest)}: nothing was queued.")
        # A host names its projects and its host name itself: where runners of more than one
        # hook token answer, picking one would hand the prompt (and the session) to whichever
        # token claimed the name. Only the person asking can say which host they meant.
        tokens = {r.token_name for r in online}
        if len(tokens) > 1:
            hosts = ", ".join(sorted(f"`{r.host}` (token `{r.token_name}`)" for r in online))
            if host is not None:
                raise CommandError(
                    f"Runners of more than one hook token call themselves `{host}` and offer "
                    f"`{project}`: {hosts}. Nothing was started; rename one of the hosts "
                    "(`runner --host`)."
                )
            raise CommandError(
                f"Runners of more than one hook token offer `{project}`: {hosts}. Nothing was "
                f"started; say which: `new {project} on <host> …`."
            )
        return min(online, key=lambda r: len(r.sessions))

    async def _submit(
        self, caller: Caller, runner: Runner, kind: str, thread: Thread, **fields: str | None
    ) -> RunnerJob:
        job = RunnerJob.for_session(
            runner,
            thread,
            kind,
            id=uuid.uuid4().hex,
            requested_by=caller.user_id,
            project=thread.project_name,
            origin_room=caller.room_id,
            origin_event=caller.event_id,
            prompt=fields.get("prompt"),
            text=fields.get("text"),
        )
        await self.runners.submit(job)
        detail = f"{kind} {thread.project_name or '?'} on {runner.host} (job {job.id})"
        await self.p.audit.record(thread.id, caller.user_id, "runner job", detail)
        return job

    # --- commands ------------------------------------------------------------------------------

    async def new(self, caller: Caller, args: argparse.Namespace) -> Reply:
        project: str = args.project
        if problem := project_problem(project):
            raise CommandError(problem + ".")
        words: list[str] = list(args.words)
        host = None
        if len(words) >= 2 and words[0].lower() == "on":
            host, words = words[1], words[2:]
            if not HOST.fullmatch(host):
                raise CommandError(f"`{host}` is not a host name (a-z, 0-9, `-`).")
        prompt = " ".join(words).strip()
        if not prompt:
            raise CommandError("What should Claude do? Usage: `new PROJECT [on HOST] PROMPT`")
        if len(prompt) > MAX_PROMPT:
            raise CommandError(f"The prompt is longer than {MAX_PROMPT} characters.")
        if command := prompt_command(prompt):
            raise CommandError(
                f"The prompt starts with `{command}`, which Claude Code runs as a command (`/`) "
                "or a shell command (`!`) instead of sending it to Claude. Start it with a word."
            )
        self._may_launch(caller, project, "new")
        runner = self._pick(project, host)
        self._usable(runner, caller)
        if runner.max_sessions is not None and len(runner.sessions) >= runner.max_sessions:
            raise CommandError(
                f"`{runner.host}` runs {len(runner.sessions)} session(s), its limit: "
                "nothing was queued."
            )
        session_id = str(uuid.uuid4())
        try:
            thread = await self.rooms.open_thread(runner, project, session_id, caller.user_id)
        except MatrixError as e:
            raise CommandError(
                f"Could not make the session's room: {e}. Nothing was queued."
            ) from e
        await self._submit(caller, runner, "new", thread, prompt=prompt)
        return Reply(
            f"🚀 Starting Claude Code in `{project}` on `{runner.host}`: {link(thread)} "
            f"(at the host: {attach_hint(runner, session_id, project)})."
        )

    async def resume(self, caller: Caller, args: argparse.Namespace) -> Reply:
        if caller.thread is not None:
            thread = caller.thread
        elif args.session:
            thread = await self.info.find(args.session)
        else:
            raise CommandError("Which session? Usage: `resume SESSION`")
        self._may_launch(caller, thread.project_name, "resume")
        if (await self.p.controls.get(thread.id)).archived_at:
            raise CommandError("This session is archived: it is not resumed from Matrix.")
        if thread.room_id is None:
            raise CommandError("That session has no room yet.")
        running = self.runners.running(thread.session_id, thread.token_name)
        if running is not None:
            raise CommandError(f"The session is running on `{running.host}` now.")
        runner = await self._runner_of(thread)
        if runner is None:
            raise CommandError(
                "No host runner ran this session, so none can resume it: at its host, "
                f"`{resume_command(thread.session_id)}`."
            )
        self._usable(runner, caller)
        directory = runner.project_dirs.get(thread.project_name or "")
        if thread.project_path is None and directory is not None:  # a thread made before it said
            await self.p.threads.learn_project_path(thread.id, directory)
        await self._submit(caller, runner, "resume", thread)
        where = "here" if caller.thread is not None else link(thread)
        return Reply(f"▶️ Resuming the session on `{runner.host}`, {where}.")

    async def _runner_of(self, thread: Thread) -> Runner | None:
        """The runner that last launched the session, else one of the owner token's that offers
        its project; never a runner of another token (the session's hooks would be refused)."""
        launch = await self.runners.jobs.last_launch(thread.session_id)
        mine = [r for r in self.runners.all() if r.token_name == thread.token_name]
        if launch is not None:
            found = [r for r in mine if r.host == launch.host]
            if found:
                return found[0]
        offering = [r for r in mine if thread.project_name in r.projects]
        online = [r for r in offering if self.runners.online(r)]
        choice = online or offering
        return choice[0] if choice else None

    async def _running_here(self, caller: Caller, what: str) -> tuple[Thread, Runner]:
        assert caller.thread is not None
        thread = caller.thread
        runner = self.runners.running(thread.session_id, thread.token_name)
        if runner is not None:
            return thread, runner
        known = await self._runner_of(thread)
        if known is None:
            raise CommandError(NO_PANE.format(what=what))
        if not self.runners.online(known):
            raise CommandError(
                f"{self._offline(known)}: nothing was queued. `!claude stop` stops the session "
                "at its next hook."
            )
        raise CommandError(f"The runner on `{known.host}` does not run this session now.")

    async def interrupt(self, caller: Caller, args: argparse.Namespace) -> Reply:
        thread, runner = await self._running_here(caller, "interrupt")
        self._usable(runner, caller)
        await self._submit(caller, runner, "interrupt", thread)
        return Reply(f"⏸️ Interrupting: Escape in the session's pane on `{runner.host}`.")

    async def end(self, caller: Caller, args: argparse.Namespace) -> Reply:
        assert caller.thread is not None
        self._may_launch(caller, caller.thread.project_name, "end")
        thread, runner = await self._running_here(caller, "end")
        self._usable(runner, caller)
        await self._submit(caller, runner, "end", thread)
        return Reply(f"⏏️ Ending the session on `{runner.host}`: `/exit`, then its pane is closed.")

    async def hosts(self, caller: Caller, args: argparse.Namespace) -> Reply:
        runners = self.runners.all()
        if not runners:
            return Reply("No host runner has polled yet (`claude-bridge runner`, docs/runner.md).")
        lines = []
        for r in runners:
            state = "online" if self.runners.online(r) else self._offline(r).split(" is ", 1)[1]
            projects = ", ".join(f"`{p}`" for p in r.projects) or "no projects"
            limit = f"/{r.max_sessions}" if r.max_sessions is not None else ""
            lines.append(
                f"- **{r.host}** (token `{r.token_name}`) · {state} · {projects} · "
                f"{len(r.sessions)}{limit} session(s)"
            )
            for s in r.sessions:
                thread = await self.p.threads.get(thread_id_for(s.session_id))
                if thread is not None and thread.token_name != r.token_name:
                    thread = None  # another token's session: this runner does not run it
                if thread is not None and not await self.info.visible(caller.user_id, [thread]):
                    continue  # shut out of its room (`!claude invite … none`): not named to them
                shown = link(thread) if thread is not None else f"`{s.session_id[:8]}`"
                lines.append(f"  - {shown} · `{s.project}` · {s.state} · `tmux attach -t {s.tmux}`")
        return Reply("\n".join(lines))
