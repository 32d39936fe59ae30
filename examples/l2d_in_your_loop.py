"""L2D in your own training loop (random data; runs in seconds: python examples/l2d_in_your_loop.py)."""

import torch
from torch import nn

import mlkd

NUM_CLASSES, BATCH, IMG = 10, 16, 64


class Net(nn.Module):
    """Any backbone giving a feature map [B, C, h, w], then mlkd's label-wise head."""

    def __init__(self, width: int, embed_dim: int):
        super().__init__()
        # e.g. a torchvision ResNet without its pool / fc
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU()
        )
        self.head = mlkd.LabelWiseHead(
            in_dim=width, num_classes=NUM_CLASSES, embed_dim=embed_dim, num_heads=4, ffn_dim=2 * embed_dim
        )

    def forward(self, images: torch.Tensor) -> mlkd.ModelOutput:
        logits, label_embeddings, _ = self.head(self.backbone(images))  # [B, q], [B, q, D]
        return mlkd.ModelOutput(logits=logits, label_embeddings=label_embeddings)


def main(steps: int = 5, seed: int = 0) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    teacher = Net(width=64, embed_dim=64).eval().requires_grad_(False)  # your trained teacher, frozen
    student = Net(width=16, embed_dim=32)  # embedding widths may differ: CD/ID compare distances
    criterion = mlkd.build_objective("l2d")  # BCE + 10 MLD + 100 CD + 1000 ID (the paper's weights)
    optimizer = torch.optim.Adam([*student.parameters(), *criterion.parameters()], lr=1e-3)
    images, targets = torch.randn(BATCH, 3, IMG, IMG), (torch.rand(BATCH, NUM_CLASSES) < 0.3).float()
    history = []
    for step in range(steps):
        with torch.no_grad():
            teacher_out = teacher(images)
        # host_targets: the labels still on the CPU, so CD/ID plan their pairs without a host sync
        loss, parts = criterion(student(images), teacher_out, targets, host_targets=targets.cpu())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"loss": loss.item(), **{name: parts[name].item() for name in criterion.weights}})
        print(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in history[-1].items()))
    return history


if __name__ == "__main__":
    main()
