"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher with this project's checks.

Registered as ``hydra/launcher=paradox_slurm`` (a structured config: the submitit keys plus
``detach`` and ``preflight``); ``conf/hydra/launcher/slurm.yaml`` sets sized defaults on top.
What it adds to the plain launcher (the logic lives in :mod:`experiments.cluster`):

- before submitting, :func:`experiments.cluster.preflight` (skip with ``preflight=false``); a
  failed check prints one line and exits 2;
- ``detach=true``: submit, print the job ids and the status, collect and resume commands, exit 0;
- otherwise wait by polling ``squeue`` (no ``sacct`` calls, so no "Bypassing sacct error"
  warnings), and when jobs end without a result print how to resume and exit 1.
"""

import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


@dataclass
class ParadoxSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.paradox_launcher.slurm.ParadoxSlurmLauncher"
    # submit, print the job ids and the commands to follow, collect and resume, and exit
    detach: bool = False
    # check the request against sinfo, the interpreter and the folder before submitting
    preflight: bool = True


ConfigStore.instance().store(
    group="hydra/launcher", name="paradox_slurm", node=ParadoxSlurmConf, provider="paradox"
)


class ParadoxSlurmLauncher(SlurmLauncher):
    def __init__(self, detach: bool = False, preflight: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.detach = bool(detach)
        self.preflight = bool(preflight)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        from experiments import cluster

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        app = f"paradox {self.config.hydra.job.name}"
        if self.preflight:
            try:
                cluster.preflight(self.params, sweep_dir)
            except cluster.ClusterError as err:
                cluster.discard_unused(sweep_dir)
                print(f"{app}: {err}", file=sys.stderr)
                sys.exit(2)
        resume = cluster.app_command(str(self.config.hydra.job.name), sweep_dir)

        # as hydra-submitit-launcher's launch(), up to the submission
        params = dict(self.params)
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            slurm_max_num_timeout=params["max_num_timeout"],
        )
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                for k, v in params.items()
                if k not in init_keys
            }
        )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (
                    list(overrides),
                    "hydra.sweep.dir",
                    idx,
                    f"job_id_for_{idx}",
                    Singleton.get_state(),
                )
            )
        try:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except Exception as err:  # sbatch refused: its own error line, not a traceback
            print(f"{app}: sbatch refused the jobs: {cluster.sbatch_error(err)}", file=sys.stderr)
            sys.exit(2)
        array_id = jobs[0].job_id.split("_")[0]
        if self.detach:
            print(cluster.detached(array_id, len(jobs), sweep_dir, resume), flush=True)
            sys.exit(0)
        log.info(
            f"submitted SLURM array {array_id} ({len(jobs)} jobs); waiting (Ctrl-C stops "
            f"waiting, the jobs go on: scancel {array_id} stops them)"
        )

        def cancel(ids: Sequence[str]) -> None:
            subprocess.run(["scancel", *ids], check=False)

        try:
            return cluster.wait(jobs, resume=resume, cancel=cancel)
        except cluster.ClusterError as err:
            print(f"{app}: {err}", file=sys.stderr)
            sys.exit(2)
        except cluster.Unfinished as err:
            print(f"{app}: {err}", file=sys.stderr)
            print(sweep_dir, flush=True)
            sys.exit(1)
        except KeyboardInterrupt:
            print(
                f"{app}: stopped waiting; the jobs go on (scancel {array_id} stops them): "
                f"paradox status {sweep_dir}; when they end, paradox collect {sweep_dir}",
                file=sys.stderr,
            )
            sys.exit(130)
