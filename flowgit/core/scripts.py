"""Which elements of an argv template an interpreter runs as code. Pure.

flowgit fills `{placeholders}` element by element and never hands the result to a shell, but a
template can name a shell itself: in `[sh, -c, "echo '{title}'"]` the title becomes shell syntax.
`script_placeholders` finds every placeholder that lands in such a script, so a config that does
this is refused before anything runs; the values are in the environment instead (FLOWGIT_*)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")

# where a task's values are for a script: the executor's environment
ENV_FOR = {"plan": "FLOWGIT_PLAN", "task": "FLOWGIT_TASK", "title": "FLOWGIT_TITLE",
           "worktree": "FLOWGIT_WORKTREE", "prompt_file": "FLOWGIT_PROMPT_FILE",
           "prompt": "FLOWGIT_PROMPT_FILE", "branch": "FLOWGIT_BRANCH", "repo": "FLOWGIT_REPO",
           "attempt": "FLOWGIT_ATTEMPT", "python": "FLOWGIT_PYTHON",
           # where `explore` and `plan draft` want their agent to write (docs/planning.md)
           "plan_file": "FLOWGIT_PLAN_FILE", "questions_file": "FLOWGIT_QUESTIONS_FILE",
           "adr_file": "FLOWGIT_ADR_FILE"}

NAMES = frozenset({*ENV_FOR, "run"})

_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "ksh93", "mksh", "pdksh", "ash", "yash",
                     "posh", "rbash", "fish", "csh", "tcsh", "busybox"})
_CODE_FLAG = {  # interpreter -> options whose next element is a program
    "python": {"-c"}, "pypy": {"-c"}, "node": {"-e", "--eval", "-p", "--print"},
    "nodejs": {"-e", "--eval", "-p", "--print"}, "bun": {"-e", "--eval", "-p", "--print"},
    "perl": {"-e", "-E"}, "ruby": {"-e"}, "php": {"-r"}, "lua": {"-e"}, "luajit": {"-e"},
    "rscript": {"-e"}, "osascript": {"-e"}, "deno": {"eval"},
}
_TAKES_VALUE = {
    "python": frozenset({"-W", "-X", "-Q"}), "pypy": frozenset({"-W", "-X", "-Q"}),
    "node": frozenset({"-r", "--require", "--import", "--loader", "-C", "--conditions",
                       "--input-type", "--env-file", "--experimental-loader"}),
    "perl": frozenset({"-I", "-M", "-m"}), "ruby": frozenset({"-I", "-r"}),
}
_CLUSTER_LAST = {"python": "c", "pypy": "c", "perl": "eE", "ruby": "e"}  # -Sc, -ne, -lne
_AWKS = frozenset({"awk", "gawk", "mawk", "nawk", "busybox-awk"})
_REST_IS_CODE = frozenset({"cmd", "powershell", "pwsh", "ssh", "watch", "parallel", "tmux"})
# programs whose -c (or --command) value is run by a shell: su, runuser, flock; and expect (Tcl)
# and vim (ex commands, where `:!` runs a shell)
_DASH_C = {"su": {"-c", "--command"}, "runuser": {"-c", "--command"}, "flock": {"-c", "--command"}, "expect": {"-c"}, "vim": {"-c", "--cmd"}, "nvim": {"-c", "--cmd"},
           "vi": {"-c", "--cmd"}, "ex": {"-c", "--cmd"}, "view": {"-c", "--cmd"}, "emacs": {"--eval"},
           "git": {"-c"}}  # git -c alias.x='!sh ...', core.pager, core.sshCommand: commands too
_SEDS = frozenset({"sed", "gsed"})  # GNU sed's `e` runs a shell command
_VERSION = re.compile(r"^([a-z]+?)-?[0-9][0-9.]*$")


@dataclass(frozen=True)
class ScriptPlaceholder:
    """Where an argv holds a script, and what runs it."""

    index: int          # the argv element holding the script
    placeholder: str    # the placeholder's name, without braces
    interpreter: str    # the program that runs the script, as written


def program_name(element: str) -> str:
    """`/usr/bin/Python3.12.exe` -> `python`, `{python}` -> `python`."""
    if element == "{python}":
        return "python"
    name = re.split(r"[/\\]", element)[-1].lower()
    if name.endswith(".exe"):
        name = name[:-4]
    m = _VERSION.match(name)
    return m.group(1) if m and m.group(1) in (*_CODE_FLAG, *_SHELLS, *_AWKS, *_DASH_C) else name


def script_placeholders(argv: Sequence[str]) -> list[ScriptPlaceholder]:
    """Every placeholder inside an element that a shell or another interpreter named in
    `argv` runs as code (also after wrappers such as env, nice, timeout or docker exec)."""
    found: list[ScriptPlaceholder] = []
    for start, element in enumerate(argv):
        name = program_name(element)
        for index in _code_elements(name, argv, start):
            for ph in dict.fromkeys(PLACEHOLDER.findall(argv[index])):
                if ph not in NAMES:  # awk's {print} is no placeholder: it stays as written
                    continue
                found.append(ScriptPlaceholder(index, ph, element))
    if not any(_known(program_name(e)) for e in argv):
        found += [ScriptPlaceholder(i, ph, argv[0]) for i in _generic_code(argv)
                  for ph in dict.fromkeys(PLACEHOLDER.findall(argv[i])) if ph in NAMES]
    seen: set[tuple[int, str]] = set()
    out = []
    for f in found:
        if (f.index, f.placeholder) not in seen:
            seen.add((f.index, f.placeholder))
            out.append(f)
    return out


# Programs the tables above know nothing of are judged by their options: an interpreter no
# list names (xonsh, nu, julia, guile, ipython, `script -c`, `xterm -e`, `nix-shell --run`,
# `npx -c`, `gdb -ex` ...) almost always takes its code after one of these. Programs whose
# such options take data, not code, are let through.
_GENERIC_FLAGS = frozenset({"-c", "-e", "-E", "-ex", "-eval", "--eval", "--exec", "--execute",
                            "--command", "--run", "--cmd"})
_DATA_ONLY = frozenset({"grep", "egrep", "fgrep", "rg", "ag", "ack", "jq", "yq", "curl", "wget",
                        "echo", "printf", "cat", "touch", "mkdir", "claude", "codex", "gemini"})


def _known(name: str) -> bool:
    return name in _SHELLS or name in _CODE_FLAG or name in _AWKS or name in _REST_IS_CODE \
        or name in _DASH_C or name in _SEDS or name == "wsl"


def _generic_code(argv: Sequence[str]) -> list[int]:
    """The elements an unknown program (argv[0]) would likely run as code: the value after a
    code option (`-c`, `-e`, `--eval`, `--run`, ..., a cluster ending in c or e such as `-qc`),
    or an `--eval=...` element itself."""
    if not argv or program_name(argv[0]) in _DATA_ONLY:
        return []
    out = []
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        if arg in _GENERIC_FLAGS or re.fullmatch(r"-[A-Za-z]+[ce]", arg):
            if i + 1 < len(argv):
                out.append(i + 1)
        elif arg.startswith("--") and arg.split("=", 1)[0] in _GENERIC_FLAGS and "=" in arg:
            out.append(i)
    return out


def _code_elements(name: str, argv: Sequence[str], start: int) -> list[int]:
    """The indexes of the elements that the program `name` at argv[start] runs as code."""
    rest = range(start + 1, len(argv))
    if name in _SHELLS:
        return _shell_script(argv, start)
    if name in _REST_IS_CODE:
        if name != "powershell" and name != "pwsh":  # cmd /c, ssh's remote command, ...: run by a shell
            if name == "cmd" and not any(argv[i].lower() in ("/c", "/k", "/r") for i in rest):
                return []
            return list(rest)
        # powershell/pwsh: -Command (any prefix), -EncodedCommand, and powershell's default
        if any(_ps_file(argv[i]) for i in rest):
            return []
        return list(rest)
    if name == "env":  # env -S "...": the string is split into words, and may name a shell
        for i in rest:
            if argv[i] in ("-S", "--split-string"):
                return [i + 1] if i + 1 < len(argv) else []
            if argv[i].startswith(("-S", "--split-string=")):
                return [i]
        return []
    if name in _DASH_C:
        out = []
        dash_c = _DASH_C[name]
        for i in rest:
            arg = argv[i]
            if arg in dash_c and i + 1 < len(argv):
                out.append(i + 1)
            elif any(arg.startswith(f + "=") for f in dash_c if f.startswith("--")):
                out.append(i)
            elif name in ("vim", "nvim", "vi", "ex", "view") and arg.startswith("+"):
                out.append(i)
            if name == "git" and not arg.startswith("-") and (i == 0 or argv[i - 1] not in dash_c):
                break  # the subcommand: what follows is its own arguments
        return out
    if name in _SEDS:
        scripts = [i + 1 for i in rest if argv[i] in ("-e", "--expression") and i + 1 < len(argv)]
        scripts += [i for i in rest if argv[i].startswith("--expression=")]
        if scripts or any(argv[i] in ("-f", "--file") or argv[i].startswith("--file=") for i in rest):
            return scripts
        i = start + 1
        while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
            i += 2 if argv[i] in ("-l", "--line-length") else 1
        if i < len(argv) and argv[i] == "--":
            i += 1
        return [i] if i < len(argv) else []
    if name == "wsl":
        if any(argv[i] in ("-e", "--exec") for i in rest):
            return []
        return list(rest)
    if name in _AWKS:
        i = start + 1
        while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
            if argv[i] in ("-f", "--file") or argv[i].startswith("-f"):
                return []
            i += 2 if argv[i] in ("-v", "-F") else 1
        if i < len(argv) and argv[i] == "--":
            i += 1
        return [i] if i < len(argv) else []
    flags = _CODE_FLAG.get(name)
    if flags is None:
        return []
    takes_value = _TAKES_VALUE.get(name, frozenset())
    last = _CLUSTER_LAST.get(name, "")
    i = start + 1
    while i < len(argv):
        arg = argv[i]
        if arg in flags:
            return [i + 1] if i + 1 < len(argv) else []
        if any(f.startswith("--") and arg.startswith(f + "=") for f in flags):
            return [i]
        if len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and arg[1:].isalpha() and arg[-1] in last:
            return [i + 1] if i + 1 < len(argv) else []  # perl -ne CODE, python -Sc CODE
        if name in ("python", "pypy") and arg.startswith("-c"):
            return [i]  # python -c'code'
        if arg == "--" or arg == "-m" or not arg.startswith("-"):
            return []  # a script file or module: what follows is its own arguments
        i += 2 if arg in takes_value else 1
    return []


def _shell_script(argv: Sequence[str], start: int) -> list[int]:
    """sh [-opts] -c SCRIPT [NAME ARGS...]: the first operand after a -c cluster is the
    script; the operands after it are data ($0, $1, ...). fish also takes --command."""
    i = start + 1
    code = False
    if program_name(argv[start]) == "busybox":
        if i < len(argv) and program_name(argv[i]) in _SHELLS:
            i += 1
        else:
            return []
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--command="):  # fish
            return [i]
        if arg == "--command":
            return [i + 1] if i + 1 < len(argv) else []
        if arg in ("--rcfile", "--init-file"):
            i += 2
            continue
        if arg[:1] in ("-", "+") and len(arg) > 1 and not arg.startswith("--"):
            if "c" in arg[1:]:
                code = True
            if arg[1:] in ("o", "O") and i + 1 < len(argv):  # -o pipefail takes a value
                i += 2
                continue
            i += 1
            continue
        if arg.startswith("--"):
            i += 1
            continue
        break
    return [i] if code and i < len(argv) else []


def _ps_file(arg: str) -> bool:
    low = arg.lower().lstrip("-/")
    return arg[:1] in ("-", "/") and len(low) >= 1 and "file".startswith(low) and low != ""


def env_hint(placeholder: str) -> str:
    if placeholder == "run":
        return "list the command in the task's `run:` and use the shell executor"
    if placeholder == "prompt":
        return "read the prompt from the file named by $FLOWGIT_PROMPT_FILE instead"
    var = ENV_FOR.get(placeholder)
    return f"read ${var} in the script instead" if var else "read it from the environment instead"
