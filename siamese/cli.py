"""`siamese COMMAND [ARGS] [key=value ...]`: one Hydra config per command, composed here and handed
to a plain function in `siamese.commands`.

Positional conveniences (`siamese detect PHOTOS --out DIR`) are rewritten into the equivalent
overrides (`input=PHOTOS out=DIR`), quoted so that any string the shell passes (spaces, non-ASCII,
`# ; & ! ~ < > ^`, newlines) reaches the command as it is. `siamese COMMAND --help` prints the
command's usage and every key of its config with the comment beside it; `--cfg job` prints the
composed config; `--json` prints the command's result as JSON on stdout instead of its lines.

Exit codes, for every command: 0 done; 1 the input could not be used (a missing or unreadable file,
nothing usable in it, a store that is not one); 2 the command line itself is wrong (an unknown
command or key, a missing argument, a malformed value). Errors are one line on stderr; set
SIAMESE_DEBUG=1 for the traceback. A command writes only where it is told: its logs go into its
own output folder (`siamese.log`), and commands without one write no log at all.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import sys
from pathlib import Path

from siamese.commands import NothingUsable
from siamese.commands.help import command_help, config_keys
from siamese.io.names import BadSetting
from siamese.io.paths import CONF_DIR

log = logging.getLogger("siamese")

# name: (config, "module.function" in siamese.commands, help, positional keys, fixed overrides,
#        the config key naming the folder its log goes into, or None: no log file)
COMMANDS = {
    "prepare": ("prepare", "data.prepare", "detect + align all of LFW into the training cache (resumable)", [], [],
                "cache_dir"),
    "data": ("lfw", "data.data", "fetch | check: get LFW (link a copy or download, MD5-checked), or check one",
             ["action", "root"], [], None),
    "teach": ("teach", "data.teach", "the distillation teacher's embedding of every LFW image (resumable) + "
              "its model dir; views=K: also K harder views of each; morphs=K: K morphs of each training image",
              [], [], "out"),
    "detect": ("detect", "faces.detect", "faces in a photo/folder/video -> aligned crops + manifest.csv",
               ["input"], [], "out"),
    "index": ("index", "faces.index", "faces of a photo/video library -> Parquet rows with embeddings (Ray; "
              "resumable)", ["input"], [], "out"),
    "collect": ("collect", "faces.collect", "capture your own face from a webcam/video into data/faces/NAME",
                ["source"], [], None),
    "train": ("train", "training.train", "train the Siamese network (resumes the same run if interrupted)", [], [],
              "run_dir"),
    "unrestricted": ("unrestricted", "training.unrestricted", "View 2 unrestricted: 10 trainings, one per fold "
                     "(long)", [], [], "run_dir"),
    "export": ("export", "training.export", "a run -> .keras, SavedModel, ONNX, TFLite + threshold + model card",
               ["run_dir"], [], None),
    "ensemble": ("ensemble", "training.ensemble", "several trained models -> one model dir (own thresholds)",
                 ["out"], [], "out"),
    "quantize": ("quantize", "training.quantize", "fit a model's int8 network (~3x faster on a CPU) on faces of its "
                 "training people -> quantization.json", ["model_path"], [], None),
    "refinish": ("refinish", "training.refinish", "redo the last step of runs trained elsewhere, on this cache",
                 [], [], None),
    "evaluate": ("evaluate", "evaluation.evaluate", "LFW View 1 + View 2 10-fold (and your folder): metrics, "
                 "report, plots", ["model_path"], [], "out"),
    "calibrate": ("calibrate", "evaluation.calibrate", "fit a model's verify.json and cluster.json on unseen "
                  "LFW people", ["model_path"], [], None),
    "openset": ("recognize", "evaluation.openset", "open-set identification on unseen LFW people: top-1/5, "
                "DIR@FAR", [], ["input=null"], "out"),  # it makes its own gallery and probes
    "bench": ("bench", "evaluation.bench", "detect|verify|embed|clips|cluster|cluster-scale|gallery|degraded|"
              "index|cluster-parquet: speed and quality tables", ["what"], [], None),
    "cluster": ("cluster", "people.cluster", "group the faces of photos / a video by person -> OUT/person_NNN/",
                ["input"], [], "out"),
    "gallery": ("gallery", "people.gallery", "known faces in SQLite: add|import|list|remove|reembed|calibrate",
                ["action", "path"], [], None),
    "enroll": ("gallery", "people.gallery", "enrol a person: camera/video/photos -> the gallery (= gallery add)",
               ["path"], ["action=add"], None),
    "verify": ("verify", "people.verify", "live: is the enrolled person there? VERIFIED/UNVERIFIED per face",
               ["source"], [], "out"),
    "serve": ("serve", "service.serve", "the HTTP API (FastAPI): detect, embed, verify, identify, subjects",
              [], [], None),
    "review": ("serve", "service.review", "review a `siamese cluster` result in the browser: name, merge, move, "
               "undo, export", ["review_dir"], ["open_browser=true"], None),
    "recognize": ("recognize", "people.recognize", "who is in these photos? a name or 'unknown' per face", ["input"],
                  [], None),
}


class UsageError(ValueError):
    """The command line itself is wrong (exit code 2)."""


_PLAIN = re.compile(r"[A-Za-z0-9_./+-]+")  # what Hydra reads as itself: anything else is quoted


def quote_value(value: str) -> str:
    """A string as a Hydra override value that reads back as exactly that string
    (`f"data.root={quote_value(path)}"`; tools composing a command's config use it too)."""
    if _PLAIN.fullmatch(value) and not value.startswith(("+", "-")) or value in ("null", "true", "false"):
        return value
    # Hydra's quoted strings: backslashes are special only before a quote (and at the end).
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    escaped = escaped.replace("'", "\\'").replace("${", "\\${")
    return f"'{escaped}'"


def _rewrite(args: list[str], positional: list[str]) -> list[str]:
    """`INPUT --out DIR k=v` -> `input=INPUT out=DIR k=v` (Hydra overrides pass through)."""
    out, pos = [], list(positional)
    it = iter(args)
    for a in it:
        if a.startswith("--") and "=" not in a and a not in ("--cfg", "--help"):
            key = a[2:].replace("-", "_")
            value = next(it, None)
            if value is None:
                raise UsageError(f"{a} needs a value")
            out.append(f"{key}={quote_value(value)}")
        elif a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out.append(f"{k.replace('-', '_')}={quote_value(v)}")
        elif pos and ("=" not in a or Path(a).exists()) and not a.startswith(("+", "~")):
            out.append(f"{pos.pop(0)}={quote_value(a)}")
        else:
            out.append(a)
    return out


def compose_config(config: str, overrides: list[str]):
    """The command's config with `overrides` applied and resolved against Hydra's runtime (its
    `${hydra:...}` interpolations), without Hydra's output folder. UsageError for any mistake.
    Every `siamese COMMAND` composes its config here; tools that need a command's config (the
    training split, `tools/val_pairs.py`) call it the same way: `compose_config("train", [...])`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(config, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise UsageError(_explain(config, str(err))) from None
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    return cfg


def _explain(config: str, message: str) -> str:
    """Hydra's first line, or for a key the config does not have: that key and the closest ones."""
    import difflib

    m = re.match(r"Could not override '([^']+)'", message.strip())
    if not m:
        return message.strip().splitlines()[0]
    keys = [k for k, _, _ in config_keys(config)[1]]
    wrong = m.group(1).split(".")[-1]

    def likeness(key: str) -> float:  # the whole dotted key, or its last part, or a part of that
        parts = [key, key.split(".")[-1], *key.split(".")[-1].split("_")]
        return max(difflib.SequenceMatcher(None, wrong, p).ratio() for p in parts)

    close = [k for k in sorted(keys, key=likeness, reverse=True) if likeness(k) >= 0.75]
    hint = f" (did you mean {' or '.join(close[:3])}?)" if close else ""
    return f"unknown key {m.group(1)!r}{hint}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text) -> str:
    """`text` with its control characters written as escapes (a newline as \\n): a file name can
    hold any of them, and must not be able to start a line of our output of its own."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def script(name: str, main) -> None:
    """Run a `tools/` script's `main()` as `siamese` runs a command: a refusal (a missing or
    unreadable file, a bad value, a missing extra) is one line on stderr and exit status 1, Ctrl-C
    exits 130; SIAMESE_DEBUG=1 shows the traceback. `main`'s int return is the exit status."""
    import zipfile

    try:
        sys.exit(main() or 0)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError, zipfile.BadZipFile) as err:
        if os.environ.get("SIAMESE_DEBUG"):
            raise
        sys.exit(f"{name}: {one_line(err)}")
    except KeyboardInterrupt:
        sys.exit(130)


class _Console(logging.Formatter):
    """Console lines: warnings and errors prefixed; the values put into a message (file names,
    person names) escaped with `one_line`, so none can forge a line of its own."""

    def format(self, record):
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record = logging.makeLogRecord({**record.__dict__, "args": tuple(
                one_line(a) if isinstance(a, (str, os.PathLike)) else a for a in args)})
        msg = super().format(record)
        return msg if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {msg}"


def _logging(verbose: bool):
    """Console logging on stderr (this package's progress, and other libraries' warnings; all of
    theirs with verbose=true), and a buffer of every record for the command's log file."""
    from logging.handlers import BufferingHandler

    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.addFilter(lambda r: verbose or r.name.startswith("siamese") or r.levelno >= logging.WARNING)
    console.setFormatter(_Console("%(message)s"))
    buffer = BufferingHandler(capacity=10**6)
    buffer.addFilter(lambda r: r.name.startswith("siamese") or r.levelno >= logging.INFO)
    buffer.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root.handlers = [console, buffer]
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.INFO)
    return buffer


def _write_log(buffer, folder, existed: bool, ok: bool) -> None:
    """The run's log records into `folder/siamese.log` (appended) — if the command made that
    folder, or finished and so owns it (a folder it refused stays as the user left it)."""
    if folder is None or not Path(folder).is_dir() or not buffer.buffer or (existed and not ok):
        return
    if not ok and not any(Path(folder).iterdir()):  # a folder this failed run made, left empty: not kept
        with contextlib.suppress(OSError):
            Path(folder).rmdir()
        return
    with open(Path(folder) / "siamese.log", "a", encoding="utf-8") as f:
        f.writelines(buffer.format(r) + "\n" for r in buffer.buffer)


def _plain(value):
    """A command's result as JSON-ready values (paths, numpy arrays and scalars converted)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def _quiet_native_logs(verbose: bool) -> None:
    # TensorFlow, absl and oneDNN print from C++ at import: set before anything imports them.
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        # FFmpeg inside OpenCV ("moov atom not found"): our own line names the file and the problem
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def run(name: str, args: list[str]) -> int:
    """Run one command; returns its exit code (see the module docstring)."""

    config, target, _, positional, fixed, log_key = COMMANDS[name]
    if "--help" in args or "-h" in args:
        print(command_help(name, config, COMMANDS[name][2], positional, fixed))
        return 0
    as_json = any(a in ("--json", "json=true", "--json=true") for a in args)
    args = [a for a in args if a not in ("--json", "json=true", "--json=true", "json=false")]
    show_cfg = "--cfg" in args
    if show_cfg:  # `--cfg job` (or --cfg alone): print the composed config
        i = args.index("--cfg")
        args = args[:i] + args[i + 1 + (args[i + 1:i + 2] == ["job"]):]
    verbose = any(a.lower() in ("verbose=true", "verbose=1") for a in args)
    args = [a for a in args if not a.lower().startswith("verbose=")]
    _quiet_native_logs(verbose)
    buffer, folder, existed, ok = _logging(verbose), None, False, False
    debug = bool(os.environ.get("SIAMESE_DEBUG"))
    try:
        cfg = compose_config(config, [*fixed, *_rewrite(args, positional)])
        if show_cfg:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg))
            return 0
        folder = cfg.get(log_key) if log_key else None
        existed = folder is not None and os.path.lexists(folder)
        from omegaconf import OmegaConf

        log.debug("siamese %s %s\n%s", name, " ".join(args), OmegaConf.to_yaml(cfg))  # for the log file
        module, _, fn = target.rpartition(".")
        command = getattr(importlib.import_module(f"siamese.commands.{module}"), fn)
        if not as_json:
            command(cfg)
            ok = True
            return 0
        failure = None
        with contextlib.redirect_stdout(io.StringIO()):  # the result alone, as JSON, on stdout
            try:
                result = command(cfg)
            except NothingUsable as err:
                result, failure = err.result, err
        print(json.dumps(_plain(result), indent=2, ensure_ascii=False))
        if failure is not None:
            raise failure
        ok = True
        return 0
    except (UsageError, BadSetting) as err:
        if debug:
            raise
        print(f"siamese {name}: {one_line(err)} — see `siamese {name} --help`", file=sys.stderr)
        return 2
    except NothingUsable as err:
        print(f"siamese {name}: {one_line(err)}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:  # ImportError: a missing extra
        if debug:
            raise
        log.debug("error: %s", err)
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"siamese {name}: stopped", file=sys.stderr)
        return 130
    finally:
        _write_log(buffer, folder, existed, ok)


def main(argv: list[str] | None = None) -> None:
    """`siamese COMMAND ...` — see `siamese --help`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in COMMANDS:
        unknown = argv and argv[0] not in ("-h", "--help", "help")
        if unknown:
            print(f"siamese: unknown command {argv[0]!r}\n", file=sys.stderr)
        print("usage: siamese COMMAND [ARGS] [key=value ...]   (`siamese COMMAND --help`: its arguments and keys)"
              "\n\ncommands:", file=sys.stderr if unknown else sys.stdout)
        for name, (_, _, help_, pos, _, _) in COMMANDS.items():
            print(f"  {name:<13} {' '.join(p.upper() for p in pos):<12} {help_}",
                  file=sys.stderr if unknown else sys.stdout)
        print("\nexit codes: 0 done, 1 the input could not be used, 2 the command line is wrong",
              file=sys.stderr if unknown else sys.stdout)
        sys.exit(2 if unknown else 0)
    try:
        code = run(argv[0], argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:  # `siamese ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
