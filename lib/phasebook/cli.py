"""The `phasebook` command: build | run | check | sync | cite | pretrain | bench | check-site | serve."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import sys
from typing import TYPE_CHECKING

from phasebook.errors import PhasebookError, suggest

if TYPE_CHECKING:
    from phasebook.launch import Rendezvous
    from phasebook.train.pretraining import Pretrained


def _book(args: argparse.Namespace):
    from phasebook.config import load_book

    return load_book(args.book)


def cmd_build(args: argparse.Namespace) -> int:
    from phasebook.book.build import build, parse_languages

    book = _book(args)
    outcomes = build(book, args.profile, parse_languages(book, args.lang))
    return 1 if any(not o.ok for o in outcomes) else 0


def cmd_run(args: argparse.Namespace) -> int:
    from phasebook.book.check import notebook_sources
    from phasebook.book.execute import RunSpec, execute
    from phasebook.book.params import resolve

    book = _book(args)
    if args.notebook not in book.notebooks:
        raise PhasebookError(f"no notebook '{args.notebook}' in book.yml. Notebooks: "
                             f"{', '.join(book.notebooks)}." + suggest(args.notebook, book.notebooks))
    if args.lang not in book.languages:
        raise PhasebookError(f"--lang: '{args.lang}' is not one of {', '.join(book.languages)}.")
    if args.profile not in book.profiles:
        raise PhasebookError(f"no profile '{args.profile}'. Profiles: {', '.join(book.profiles)}.")
    source = notebook_sources(book)[args.notebook]
    overrides = dict(book.profiles[args.profile].get(args.notebook, {}))
    cli = dict(args.param or [])
    params = resolve(source.parameters, overrides | cli, args.notebook, "-p")
    spec = RunSpec(book, source, args.lang, params)
    print(f"phasebook: running {spec.label} with parameters {json.dumps(params)}")
    outcome = execute(spec, force=args.force)
    figures = sorted((spec.run_dir / "figures").glob("*/*/*.png")) if outcome.good_dir else []
    print(f"{outcome.status} in {outcome.seconds:.1f}s")
    if not outcome.ok:
        print(f"FAILED: {outcome.error} (cell {outcome.cell})\nlog: {outcome.log}\n"
              + (f"last good result kept in {spec.run_dir}" if outcome.good_dir else ""))
        return 1
    print(f"results: {spec.run_dir}\nnotebook: {spec.run_dir / 'notebook.ipynb'}")
    for fig in figures:
        print(f"figure: {fig}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from phasebook.book.check import check
    from phasebook.book.pages import load_pages

    book = _book(args)
    sources = check(book)
    params = sum(len(s.parameters) for s in sources.values())
    print(f"book.yml OK: {len(book.pages)} pages × {len(book.languages)} languages, "
          f"{len(sources)} notebooks ({params} parameters), profiles: {', '.join(book.profiles)}")
    pages = load_pages(book)
    for page_id in sorted(pages.pages):
        for lang in sorted(pages.pages[page_id]):
            if changed := pages.stale(page_id, lang):
                print(f"stale translation: content/{page_id}.{lang}.md — the {', '.join(changed)} version "
                      f"changed since it was last synced (readers see a notice); after updating it, run "
                      f"`phasebook sync {page_id}`")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from phasebook.book.pages import sync

    book = _book(args)
    try:
        written = sync(book, args.page)
    except (KeyError, ValueError) as exc:
        raise PhasebookError(str(exc).strip("'\"")) from exc
    for path in written:
        print(f"synced: {path.relative_to(book.root)}")
    if not written:
        print(f"{args.page}: already in sync")
    return 0


def cmd_cite(args: argparse.Namespace) -> int:
    from phasebook.book.citation import cite

    book = _book(args)
    figures = book.build_dir / "figures"
    path = figures / args.figure_id / args.lang / "provenance.json"
    if not path.is_file():
        known = sorted(p.name for p in figures.iterdir()) if figures.is_dir() else []
        hint = (f" Known figures: {', '.join(known)}." + suggest(args.figure_id, known)) if known \
            else " No figures yet: run `make book` (or `phasebook build`) first."
        raise PhasebookError(f"no figure '{args.figure_id}' ({args.lang}) in {figures}.{hint}")
    print(cite(json.loads(path.read_text(encoding="utf-8")), args.format))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    book = _book(args)
    site = book.build_dir / "site"
    if not (site / "index.html").is_file():
        raise PhasebookError(f"no site in {site}: run `make book` first.")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
        print(f"serving {site} at http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0


def cmd_check_site(args: argparse.Namespace) -> int:
    from pathlib import Path

    from phasebook.book.sitecheck import check_site, site_languages

    if args.site:
        site = Path(args.site)
        languages = site_languages(site) if site.is_dir() else []
    else:
        book = _book(args)
        site, languages = book.build_dir / "site", list(book.languages)
    if not site.is_dir() or not languages:
        raise PhasebookError(f"no built site in {site}: run `make book` first.")
    report = check_site(site, languages)
    print(report.summary())
    return 0 if report.clean else 1


def _overrides(items: list[str] | None) -> dict:
    """`--set SECTION.FIELD=VALUE` options as nested changes of a PretrainConfig, each VALUE read
    as YAML (numbers, true/false, lists): `{"train": {"optimizer": {"lr": 0.001}}}`."""
    import yaml

    changes: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        section, dot, field = key.partition(".")
        if not (sep and dot) or section not in ("model", "train", "corpus"):
            raise PhasebookError(f"--set {item!r}: write SECTION.FIELD=VALUE with SECTION one of "
                                 "model, train, corpus (e.g. --set train.batch_size=16).")
        node = changes.setdefault(section, {})
        *parents, leaf = field.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(raw)
    return changes


def _check_preset(name: str, presets: dict) -> None:
    if name not in presets:
        raise PhasebookError(f"--preset: no preset '{name}'. Presets: {', '.join(presets)}."
                             + suggest(name, presets))


def _command_line() -> str:
    import shlex

    return "phasebook " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from phasebook.bench import train as bench_train
    from phasebook.train.pretraining import PRESETS

    _check_preset(args.preset, PRESETS)
    changes = _overrides(args.set)
    record = bench_train.run(args.preset, args.steps, changes, Path(args.out) if args.out else None,
                             _command_line())
    print(bench_train.report(record))
    if args.out:
        print(f"written: {args.out}")
    return 0


def _rendezvous(args: argparse.Namespace) -> Rendezvous:
    from phasebook.launch import Rendezvous

    return Rendezvous(args.nproc_per_node, args.nnodes, args.node_rank, args.rdzv_endpoint,
                      args.max_restarts)


def _pretrain_command(args: argparse.Namespace) -> list[str]:
    """The user's `phasebook pretrain` command, spelled out: what to run again to resume."""
    command = ["phasebook", "pretrain", "--preset", args.preset]
    for item in args.set or []:
        command += ["--set", item]
    command += ["--nproc-per-node", str(args.nproc_per_node)]
    if args.nnodes > 1:
        command += ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank),
                    "--rdzv-endpoint", args.rdzv_endpoint]
    if args.max_restarts:
        command += ["--max-restarts", str(args.max_restarts)]
    return command


def _print_pretrained(run: Pretrained, stored: bool) -> None:
    s = run.summary
    val = f" (validation {s['final_val_loss']:.4f})" if s.get("final_val_loss") is not None else ""
    print(f"{'already stored' if stored else 'trained'}: {s['parameters'] / 1e6:.2f}M parameters, "
          f"{s['steps']} steps, {s['tokens_seen']:,} tokens")
    print(f"final loss: {s['final_loss']:.4f}{val}")
    print(f"result: {run.path}")


def cmd_pretrain(args: argparse.Namespace) -> int:
    import os

    from phasebook import launch
    from phasebook.store import Store
    from phasebook.train import pretraining

    _check_preset(args.preset, pretraining.PRESETS)
    rendezvous = _rendezvous(args)
    changes = _overrides(args.set)
    if rendezvous.world_size > 1:
        if launch.under_torchrun():
            raise PhasebookError("--nproc-per-node/--nnodes: this command already runs under torchrun; "
                                 "drop those options (torchrun's own say how many ranks run).")
        return _launch_pretrain(args, rendezvous, changes)
    cfg = pretraining.PRESETS[args.preset].replace(**changes)
    store = Store()
    stored = store.path("pretrain", cfg.key()).is_dir()
    try:
        run = pretraining.pretrain(cfg, store)
    finally:
        _leave_process_group()
    if os.environ.get("RANK", "0") == "0":
        _print_pretrained(run, stored)
    return 0


def _leave_process_group() -> None:
    """Under torchrun: shut the process group down before exiting, as NCCL asks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _launch_pretrain(args: argparse.Namespace, rendezvous: Rendezvous, changes: dict) -> int:
    """Re-run this command on every rank under torchrun; explain a failure in one paragraph."""
    import shlex

    import torch

    from phasebook import launch
    from phasebook.store import Store
    from phasebook.train import pretraining
    from phasebook.train.distributed import resolve_device
    from phasebook.train.loop import rows_per_rank

    sets = list(args.set or [])
    strategy = changes.get("train", {}).get("parallel", "ddp")
    if strategy == "none":
        raise PhasebookError(f"--set train.parallel=none: {rendezvous.world_size} processes need "
                             "train.parallel ddp or fsdp (or run 1 process).")
    if "parallel" not in changes.get("train", {}):
        sets.append("train.parallel=ddp")
        changes = _overrides(sets)
    # Bad values fail here, once, rather than on every rank.
    cfg = pretraining.PRESETS[args.preset].replace(**changes)
    rows_per_rank(cfg.train, rendezvous.world_size)
    gpus = torch.cuda.device_count()
    if resolve_device(cfg.train.device).type == "cuda" and rendezvous.nproc_per_node > gpus:
        raise PhasebookError(f"--nproc-per-node {rendezvous.nproc_per_node}: one process per GPU, and this "
                             f"node has {gpus}.")
    rank_args = ["pretrain", "--preset", args.preset]
    for item in sets:
        rank_args += ["--set", item]
    command = launch.torchrun_command(rendezvous, "phasebook.cli", rank_args)
    outcome = launch.run_job(command, launch.rank_environment(rendezvous.nproc_per_node))
    if outcome.ok:
        return 0
    checkpoint = pretraining.last_good_checkpoint(cfg, Store())
    resume = shlex.join(_pretrain_command(args))
    where = "on every node (each with its own --node-rank)" if rendezvous.nnodes > 1 else "again"
    if checkpoint is None:
        saved = "No checkpoint was written yet, so running the same command again starts from step 0"
    else:
        saved = (f"The last good checkpoint is {checkpoint}; run the same command {where} to resume "
                 "from it")
    restarts = ("" if args.max_restarts else "\n(or add --max-restarts N, and torchrun restarts the ranks "
                "from the last checkpoint by itself).")
    why = launch.explain_failure(outcome)
    raise PhasebookError(f"training on {rendezvous.world_size} ranks failed. {why} {saved}:\n"
                         f"  {resume}{restarts}")


def cmd_bench_parallel(args: argparse.Namespace) -> int:
    from pathlib import Path

    from phasebook.bench import parallel as bench_parallel
    from phasebook.train.pretraining import PRESETS

    _check_preset(args.preset, PRESETS)
    world_sizes = bench_parallel.parse_world_sizes(args.world_sizes)
    record = bench_parallel.run(args.preset, world_sizes, args.strategy, args.steps, _overrides(args.set),
                                Path(args.out) if args.out else None, _command_line())
    print(bench_parallel.report(record))
    if args.out:
        print(f"written: {args.out}")
    return 0


def cmd_bench_rollout(args: argparse.Namespace) -> int:
    from pathlib import Path

    from phasebook.bench import rollout as bench_rollout

    record = bench_rollout.run(new_tokens=args.new_tokens, batch_size=args.batch_size, repeat=args.repeat,
                               device=args.device, out=Path(args.out) if args.out else None,
                               command=_command_line())
    print(bench_rollout.report(record))
    if args.out:
        print(f"written: {args.out}")
    return 0


def cmd_bench_kernels(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from phasebook.bench import kernels as bench_kernels

    families = bench_kernels.parse_families(args.only)
    if args.repeat < 1:
        raise PhasebookError(f"--repeat {args.repeat}: give at least 1 measurement per row.")
    command = "phasebook " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    echo = functools.partial(print, file=sys.stderr) if sys.stderr.isatty() else None
    record = bench_kernels.run(families, quick=args.quick, repeat=args.repeat,
                               out=Path(args.out) if args.out else None, command=command, echo=echo)
    print(bench_kernels.report(record))
    if args.out:
        print(f"written: {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phasebook", description=__doc__)
    p.add_argument("--book", default=".", help="folder holding book.yml (default: .)")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="execute every notebook in every language, render the site")
    b.add_argument("--profile", default="default", help="parameter profile from book.yml")
    b.add_argument("--lang", help="comma-separated languages (default: all)")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="rerun one notebook with new parameters")
    r.add_argument("notebook")
    r.add_argument("--lang", default="en")
    r.add_argument("--profile", default="default", help="profile whose values are the start")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    r.add_argument("--force", action="store_true", help="execute even if a cached result exists")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate book.yml, pages, notebooks, parameters")
    c.set_defaults(func=cmd_check)

    sy = sub.add_parser("sync", help="record a content page's languages as translations of each other "
                        "(after updating one to match the other)")
    sy.add_argument("page", help="page id, e.g. essays/interpolation")
    sy.set_defaults(func=cmd_sync)

    ci = sub.add_parser("cite", help="print a figure's citation")
    ci.add_argument("figure_id")
    ci.add_argument("--format", choices=("bibtex", "text"), default="bibtex")
    ci.add_argument("--lang", default="en")
    ci.set_defaults(func=cmd_cite)

    pt = sub.add_parser("pretrain", help="pre-train a model through the store, on one or several "
                        "processes, GPUs or nodes")
    pt.add_argument("--preset", default="base", help="model and training preset (base, gpu-125m)")
    pt.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                    help="override a field, e.g. --set train.steps=200 --set train.parallel=fsdp")
    pt.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                    help="processes (GPUs) per node; above 1, runs under torchrun with train.parallel "
                    "ddp unless --set train.parallel=fsdp")
    pt.add_argument("--nnodes", type=int, default=1, metavar="M", help="nodes taking part (default: 1)")
    pt.add_argument("--node-rank", type=int, default=0, metavar="R", help="this node's rank, 0 to M-1")
    pt.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                    help="where the nodes meet: node 0's address and a free port (several nodes)")
    pt.add_argument("--max-restarts", type=int, default=0, metavar="K",
                    help="restart every rank up to K times after a failure, resuming from the last "
                    "checkpoint (default: 0)")
    pt.set_defaults(func=cmd_pretrain)

    be = sub.add_parser("bench", help="measure performance (prints and stores, never asserts)")
    bench_sub = be.add_subparsers(dest="benchmark", required=True)
    bt = bench_sub.add_parser("train", help="tokens/s and MFU of the training loop on a preset model")
    bt.add_argument("--preset", default="base", help="model and training preset (base, gpu-125m)")
    bt.add_argument("--steps", type=int, help="optimizer steps (default: 60)", default=60)
    bt.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                    help="override a field, e.g. --set train.batch_size=16 --set train.compile=false")
    bt.add_argument("--out", help="write the measurement as JSON with provenance to this file")
    bt.set_defaults(func=cmd_bench)
    bk = bench_sub.add_parser("kernels", help="our GEMM, fp8 GEMM, RMSNorm and linear + cross-entropy "
                              "kernels against cuBLAS, eager torch and torch.compile")
    bk.add_argument("--quick", action="store_true",
                    help="only the shapes the goals are judged at (implied without CUDA)")
    bk.add_argument("--repeat", type=int, default=3,
                    help="measurements per row; the row reports their median (default: 3)")
    bk.add_argument("--only", metavar="FAMILIES",
                    help="comma-separated subset of gemm,fp8,rmsnorm,linear_ce (default: all)")
    bk.add_argument("--out", help="write the measurements as JSON with provenance to this file")
    bk.set_defaults(func=cmd_bench_kernels)

    bp = bench_sub.add_parser("parallel", help="data-parallel scaling efficiency and communication share "
                              "(torchrun jobs of 1, 2, ... ranks with the same batch per rank)")
    bp.add_argument("--preset", default="base", help="model and training preset (base, gpu-125m)")
    bp.add_argument("--world-sizes", default="1,2", metavar="W1,W2,...",
                    help="numbers of ranks to measure; 1 is always included (default: 1,2)")
    bp.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp", help="how ranks share the model")
    bp.add_argument("--steps", type=int, default=10, help="measured steps per world size (default: 10)")
    bp.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE",
                    help="override a field, e.g. --set train.batch_size=8 (the batch of each rank)")
    bp.add_argument("--out", help="write the measurement as JSON with provenance to this file")
    bp.set_defaults(func=cmd_bench_parallel)
    br = bench_sub.add_parser("rollout", help="sampling tokens/s with the KV cache against recomputation")
    br.add_argument("--new-tokens", type=int, default=256, help="tokens generated per prompt (default: 256)")
    br.add_argument("--batch-size", type=int, default=16, help="prompts generated together (default: 16)")
    br.add_argument("--repeat", type=int, default=3, help="timed calls per path; the median is reported")
    br.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    br.add_argument("--out", help="write the measurement as JSON with provenance to this file")
    br.set_defaults(func=cmd_bench_rollout)

    cs = sub.add_parser("check-site", help="load every page of the built site in headless Chromium: "
                        "console errors, requests leaving localhost or failing, language switches")
    cs.add_argument("--site", metavar="DIR", help="the built site (default: the book's build/site)")
    cs.set_defaults(func=cmd_check_site)

    s = sub.add_parser("serve", help="serve build/site on localhost")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--host", default="127.0.0.1")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except PhasebookError as exc:
        print(f"phasebook {args.command}: error\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
