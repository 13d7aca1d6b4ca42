"""The ``bitbudget`` command: plan, memory, check-config and recommend.

``bitbudget plan`` and ``bitbudget memory`` take the options of ``python -m bitbudget.plan`` and
``python -m bitbudget.memory`` (both still work). ``bitbudget check-config FILE`` reads a config
file as Snakemake would and lists every error the checks before a run find, without starting
Snakemake. ``bitbudget recommend --memory 24GiB`` says what to run on a GPU of that memory, from
a finished study's results (:mod:`bitbudget.recommend`).

Exit status: 0 on success, 1 when check-config finds errors, 2 for a question the results
cannot answer (and for bad options, as argparse does).
"""

from __future__ import annotations

import argparse
import json
import sys

from bitbudget import memory, plan, preflight, recommend
from bitbudget.capabilities import refusals
from bitbudget.config import ConfigError, read_config_file, schema_errors, validate_config

EXIT_CONFIG_ERRORS = 1
EXIT_UNANSWERABLE = 2


def config_errors(config: dict) -> list[str]:
    """Every error the checks before a run find: each schema violation; on a config the schema
    accepts (its defaults then filled in place), the first cross-field error (settings, the
    adaptive rule, local dataset files) and every engine/format/KV combination this machine
    cannot run."""
    errors = schema_errors(config)
    if errors:
        return errors
    try:
        validate_config(config)
        preflight.check_adaptive(config)
        preflight.check_dataset_files(config)
    except ConfigError as error:
        errors.append(str(error))
    try:
        errors += refusals(config)
    except KeyError:  # a grid names an entry that is not defined: the error above says which
        pass
    return errors


def check_config(args: argparse.Namespace) -> int:
    try:
        config = read_config_file(args.file)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG_ERRORS
    except OSError as error:
        print(f"{args.file}: cannot read it ({error.strerror}); fix: give the path of a config file",
              file=sys.stderr)
        return EXIT_UNANSWERABLE
    errors = config_errors(config)
    for error in errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    if not errors:
        print(f"{args.file}: no errors")
    return EXIT_CONFIG_ERRORS if errors else 0


_seconds = plan.float_option(lambda seconds: seconds > 0, "a positive number of seconds, e.g. 600")


def _memory(text: str) -> float:
    try:
        return recommend.parse_memory(text)
    except recommend.RecommendError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--memory: ")) from None


def add_recommend_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--memory", type=_memory, required=True,
                        help="GPU memory for weights and KV cache, e.g. 24GiB, 24GB (= GiB), 512MiB, 300KB")
    parser.add_argument("--dataset", help="one dataset of the study (default: every dataset the budget is inside of)")
    parser.add_argument("--results", default=str(recommend.DEFAULT_RESULTS),
                        help="the study's results folder, with a finished aggregate (default: results)")
    parser.add_argument("--max-seconds", type=_seconds,
                        help="rank only configurations whose estimated time per question fits "
                             "(decode tokens at bitbudget.plan's assumed throughput)")
    parser.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    return parser


def run_recommend(args: argparse.Namespace) -> int:
    try:
        results = recommend.read_results(args.results)
        found = recommend.recommend(results, args.memory, args.dataset, args.max_seconds)
    except recommend.RecommendError as error:
        print(f"bitbudget recommend: {error}", file=sys.stderr)
        return EXIT_UNANSWERABLE
    print(json.dumps(found, indent=2) if args.json else recommend.format_recommendation(found))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="bitbudget", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = commands.add_parser("plan", help="scenarios, jobs, decode tokens and GPU-hours of a config",
                              description=plan.DESCRIPTION)
    plan.add_arguments(sub).set_defaults(run=plan.run)
    sub = commands.add_parser("memory", help="Qwen3 weight and KV memory beside the paper's table",
                              description=memory.DESCRIPTION)
    memory.add_arguments(sub).set_defaults(run=memory.run)
    sub = commands.add_parser("check-config", help="every error of a config file, with file and line",
                              description="Read a config file and list every error the checks before a run "
                                          "find (YAML syntax with file and line, duplicate keys, schema, "
                                          "cross-field rules, what this machine cannot run).")
    sub.add_argument("file", help="the config file, e.g. config/paper.yaml")
    sub.set_defaults(run=check_config)
    sub = commands.add_parser("recommend", help="what to run on a GPU of a given memory, from a study's results",
                              description=recommend.__doc__.split("\n\n")[0])
    add_recommend_arguments(sub).set_defaults(run=run_recommend)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
