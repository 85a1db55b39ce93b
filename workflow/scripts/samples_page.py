"""Rule samples_page: results/<name>/samples.html, every forget sample on one offline page."""
from mrd_unlearning.warm import hand_off

hand_off()  # with MRD_WARM_SOCKET set, the job runs in a fork of a warm interpreter

from mrd_unlearning.browser import samples_page
from mrd_unlearning.jobs import job_log

sm = snakemake  # noqa: F821
with job_log(sm.log[0]):
    samples_page(sm.input.scores, sm.input.data, sm.input.target, sm.input.retain,
                 dict(zip(sm.params.arms, sm.input.runs)), dict(zip(sm.params.truths, sm.input.curves)),
                 sm.output[0], name=sm.params.name, replicate=sm.params.replicate, seed=sm.params.seed)
