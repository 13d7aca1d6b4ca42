"""Snakemake adapter: train one tiny reasoning model (bitbudget.tinymodels.train_tiny_model).

params: model (dict of architecture/training arguments of train_tiny_model), task (dict)
output: [0] the model directory
log:    [0]
"""

import json
import logging
import sys

from bitbudget.tinymodels import train_tiny_model


def main(snakemake):
    logging.basicConfig(
        filename=snakemake.log[0],
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.excepthook = lambda *exc: logging.getLogger("train_tiny_model").error(
        "uncaught exception", exc_info=exc
    )
    summary = train_tiny_model(
        snakemake.output[0],
        **dict(snakemake.params.model),
        task=dict(snakemake.params.task),
        num_threads=snakemake.threads,
    )
    logging.getLogger("train_tiny_model").info("summary %s", json.dumps(summary))


main(snakemake)  # noqa: F821
