"""Probe trained students: per-batch magnitude and gradient norm of BCE, MLD, CD and ID.

usage: python scripts/probe_label_terms.py TEACHER_RUN NAME=STUDENT_RUN ... [--images N] [--json PATH]
       python scripts/probe_label_terms.py runs/demo          # the Fashion-MNIST demo's folders

Takes N (default 256) training images of the teacher's data config (never the test split) in
eval-mode networks and batches of 64, and prints per model: the unweighted loss of each term
(BCE summed, MLD / CD / ID as the official code defines them), the term times the paper's λ
(MLD 10, CD 100, ID 1000), the L2 norm of that weighted term's gradient with respect to the
student's parameters, and per batch the CD groups (classes with >= 3 positives: a pair gives
exactly zero) and ID groups (images with >= 2 labels).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mlkd.config import Config
from mlkd.data.batch import collate
from mlkd.data.loaders import build_datasets
from mlkd.engine.builders import model_from_checkpoint
from mlkd.losses import METHODS, bce_loss, cd_id_losses
from mlkd.losses.logits import mld_loss

TERMS = ("bce", "mld", "cd", "id")


def _checkpoint(path: str) -> Path:
    p = Path(path)
    return p / "checkpoints" / "last.pt" if p.is_dir() else p


def _grad_norm(value: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def probe(student: torch.nn.Module, teacher: torch.nn.Module, batches: list[dict]) -> dict[str, float]:
    """Means over batches of each term (raw, x λ) and its weighted gradient norm."""
    weights = METHODS.get("l2d").weights
    params = [p for p in student.parameters() if p.requires_grad]
    rows = []
    for batch in batches:
        with torch.no_grad():
            t = teacher(batch["images"])
        s = student(batch["images"])
        cd, id_ = cd_id_losses(s.label_embeddings, t.label_embeddings, batch["targets"])
        raw = {"bce": bce_loss(s.logits, batch["targets"]), "mld": mld_loss(s.logits, t.logits), "cd": cd, "id": id_}
        row = {}
        for name, value in raw.items():
            weighted = weights.get(name, 1.0) * value
            row[name] = float(value.detach())
            row[f"{name}_weighted"] = float(weighted.detach())
            row[f"{name}_grad"] = _grad_norm(weighted, params) if weighted.requires_grad else 0.0
        targets = batch["targets"]
        row["cd_groups"] = float((targets.sum(0) >= 3).sum())
        row["id_groups"] = float((targets.sum(1) >= 2).sum())
        rows.append(row)
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", help="teacher run folder or checkpoint (or a demo folder)")
    parser.add_argument("students", nargs="*", help="NAME=run folder or checkpoint")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    students = dict(s.split("=", 1) for s in args.students)
    teacher_path = args.teacher
    if not students:  # a demo folder: <root>/<prefix>-teacher, -vanilla, -mld, -l2d, ...
        root = Path(args.teacher)
        prefix = next(p.name[: -len("-teacher")] for p in sorted(root.glob("*-teacher")))
        teacher_path = str(root / f"{prefix}-teacher")
        students = {
            p.name[len(prefix) + 1 :]: str(p)
            for p in sorted(root.glob(f"{prefix}-*"))
            if p.name != f"{prefix}-teacher" and (p / "checkpoints" / "last.pt").exists()
        }
    device = torch.device("cpu")
    teacher, state = model_from_checkpoint(_checkpoint(teacher_path), device)
    teacher.eval()
    train, _ = build_datasets(Config.model_validate(state["config"]).data)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.images].tolist()
    batches = [collate([train[i] for i in order[j : j + 64]]) for j in range(0, len(order), 64)]
    results = {}
    print(
        "| model | BCE | MLD | CD | ID | 10 MLD | 100 CD | 1000 ID | grad BCE | grad 10 MLD | grad 100 CD "
        "| grad 1000 ID | CD groups >= 3 | ID groups |"
    )
    print("|---|" + "---:|" * 13)
    for name, path in students.items():
        student, _ = model_from_checkpoint(_checkpoint(path), device)
        student.eval()
        r = results[name] = probe(student, teacher, batches)
        cells = [r[t] for t in TERMS] + [r[f"{t}_weighted"] for t in TERMS[1:]] + [r[f"{t}_grad"] for t in TERMS]
        print(
            f"| {name} | " + " | ".join(f"{v:.4g}" for v in cells) + f" | {r['cd_groups']:.1f} | {r['id_groups']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
