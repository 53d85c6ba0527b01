"""Data-parallel training of every drafter kind under both of fairseq's DDP backends, in
two CPU processes over gloo: do both ranks end with the same parameters?

Run by ``tests/test_distributed_sync.py`` (``python tests/ddp_sync.py --data BIN
--verifier PT --out RESULT.json``). Each rank builds the task, model and criterion through
fairseq's own option parsing, wraps the model the way fairseq's ``DistributedFairseqModel``
does (``legacy_ddp``: that very function; ``pytorch_ddp``: torch's
``DistributedDataParallel`` inside fairseq's ``ModuleProxyWrapper``, as fairseq builds it
but without ``device_ids``, which torch refuses for CPU modules), and runs the task's own
``train_step`` on batches of its own data shard, reducing gradients the way fairseq's
trainer does. Rank 0 writes, per case, the largest parameter difference between the
ranks, how far the parameters moved, and the error if training failed.

The case ``bypass`` is a control: a glancing criterion that calls the model's encoder and
decoder directly, as the plugin's did before, instead of the model's (the wrapper's)
forward. Under ``pytorch_ddp`` its gradients are never all-reduced.
"""
import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "fairseq_specdec")
sys.path.insert(0, str(REPO / "tests"))
from conftest import TINY_MODEL  # noqa: E402  (the test suite's tiny widths)
UPDATES = 3
BACKENDS = ("pytorch_ddp", "legacy_ddp")


def kinds(verifier: str):
    """Training flags of each drafter kind (and the bypass control)."""
    state = ["--init-from-verifier", verifier, "--share-verifier-encoder", "--init-decoder-from-verifier",
             "--kd-weight", "0.5"]
    return {
        "spec_drafter": ["--arch", "specdec_drafter_tiny", "--criterion", "specdec_glancing"],
        "spec_drafter_shared": ["--arch", "specdec_drafter_tiny", "--criterion", "specdec_glancing",
                                "--init-from-verifier", verifier, "--share-verifier-encoder"],
        "feature": ["--arch", "specdec_drafter_feature_tiny", "--criterion", "specdec_feature", *state],
        "chain": ["--arch", "specdec_drafter_chain_tiny", "--criterion", "specdec_chain", *state],
        "bypass": ["--arch", "specdec_drafter_tiny", "--criterion", "specdec_glancing"],
    }


def bypassing(criterion):
    """The glancing loss computed by calling the model's encoder and decoder directly."""
    from fairseq_specdec.models.specdec_drafter import DrafterLogits

    class Bypass:
        def __init__(self, wrapped):
            self.wrapped = wrapped
            self.training = wrapped.training

        def __call__(self, src_tokens, src_lengths, prev_output_tokens, block_size, glance=None):
            encoder_out = self.wrapped.encoder(src_tokens, src_lengths=src_lengths)
            logits = self.wrapped.decoder(prev_output_tokens, encoder_out, block_size)
            return DrafterLogits(logits, logits.detach().argmax(-1), None)

    forward = criterion.forward
    criterion.forward = lambda model, sample, reduce=True: forward(Bypass(model), sample, reduce)
    return criterion


def setup(data: str, flags):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        data, "--user-dir", USER_DIR, "--task", "specdec_translation", *TINY_MODEL, "--block-size", "5",
        "--optimizer", "adam", "--lr", "3e-3", "--max-tokens", "400", "--seed", "1", "--cpu",
        "--dropout", "0.0", *flags])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(cfg.common.seed)  # as fairseq-train seeds every rank before building the model
    return cfg, task, task.build_model(cfg.model), task.build_criterion(cfg.criterion)


def wrap(model, backend: str, cfg):
    from fairseq.distributed import ModuleProxyWrapper
    from fairseq.models import DistributedFairseqModel

    if backend == "legacy_ddp":
        dt = cfg.distributed_training
        dt.ddp_backend = backend
        return DistributedFairseqModel(dt, model, process_group=dist.group.WORLD, device=torch.device("cpu"))
    dt = cfg.distributed_training
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, broadcast_buffers=dt.broadcast_buffers, bucket_cap_mb=dt.bucket_cap_mb,
        find_unused_parameters=dt.find_unused_parameters, gradient_as_bucket_view=dt.gradient_as_bucket_view)
    return ModuleProxyWrapper(ddp)


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters() if p.requires_grad])


def shard_batches(task, model, rank: int):
    from fairseq import utils

    task.load_dataset("train")
    itr = task.get_batch_iterator(
        dataset=task.dataset("train"), max_tokens=400, seed=1, num_shards=2, shard_id=rank,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=True, disable_iterator_cache=True).next_epoch_itr(shuffle=True)
    return [batch for _, batch in zip(range(UPDATES), itr)]


def train_case(rank: int, data: str, flags, backend: str, bypass: bool):
    from fairseq import optim

    cfg, task, model, criterion = setup(data, flags)
    if bypass:
        criterion = bypassing(criterion)
    wrapped = wrap(model, backend, cfg)
    start = flat(model)  # after the wrapper's broadcast of rank 0's parameters
    optimizer = optim.build_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    for update, sample in enumerate(shard_batches(task, model, rank)):
        wrapped.train()
        criterion.train()
        optimizer.zero_grad()
        task.train_step(sample, wrapped, criterion, optimizer, update)
        optimizer.all_reduce_grads(wrapped)  # what fairseq's trainer does (legacy_ddp reduces here)
        optimizer.step()
    end = flat(model)
    both = [torch.zeros_like(end) for _ in range(2)]
    dist.all_gather(both, end)
    return {"rank_difference": float((both[0] - both[1]).abs().max()), "moved": float((end - start).abs().max())}


def worker(rank: int, port: int, data: str, verifier: str, out: str):
    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    results = {}
    for kind, flags in kinds(verifier).items():
        for backend in BACKENDS:
            if kind == "bypass" and backend == "legacy_ddp":
                continue
            try:
                results[f"{kind}/{backend}"] = train_case(rank, data, flags, backend, bypass=kind == "bypass")
            except Exception as err:  # recorded: the test names the case and shows the message
                results[f"{kind}/{backend}"] = {"error": f"{type(err).__name__}: {err}"[:2000]}
            dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps(results, indent=1))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--verifier", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(worker, args=(args.port, args.data, args.verifier, args.out), nprocs=2, join=True)


if __name__ == "__main__":
    main()
