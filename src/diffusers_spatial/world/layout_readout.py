"""Reading a layout out of a caption's token states: the head that trains the world text encoder and the probe that
measures any encoder (docs/world.md, "the text encoder").

The UNet reads a caption through cross-attention over every token state. `LayoutReadout` does the same with one
query per cell of a coarse grid and paints each cell's palette class; `layout_relation_holds` says whether the
painted subject lies on the relation's side of the painted object.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# relation -> (axis of the (row, column) offset, sign the subject-minus-object offset must have)
PLANAR_AXES = {"left_of": (1, -1), "right_of": (1, 1), "above": (0, -1), "below": (0, 1)}


class LayoutReadout(nn.Module):
    """One query per grid cell attends to the token states and predicts the cell's class (0: background)."""

    def __init__(self, hidden_size: int, num_classes: int, grid: int = 8, dim: int = 64):
        super().__init__()
        self.grid = grid
        self.queries = nn.Parameter(torch.randn(grid * grid, dim) * 0.1)
        self.keys, self.values = nn.Linear(hidden_size, dim), nn.Linear(hidden_size, dim)
        self.out = nn.Linear(dim, num_classes)

    def forward(self, token_states: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, grid * grid, num_classes), cells in row-major order."""
        scores = self.queries @ self.keys(token_states).transpose(1, 2) / self.queries.shape[1] ** 0.5
        return self.out(torch.softmax(scores, -1) @ self.values(token_states))


def grid_cells(grid: int) -> torch.Tensor:
    """(row, column) of every cell of a `grid` x `grid` map in row-major order, shape (grid * grid, 2)."""
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.stack([rows, columns], -1).view(-1, 2).float()


def layout_relation_holds(painted: torch.Tensor, subject: int, obj: int, relation: str, cells: torch.Tensor) -> bool:
    """Whether the probability-weighted centroid of class `subject` lies on `relation`'s side of class `obj`'s,
    along the relation's axis more than across it. `painted` is one caption's (cells, classes) probabilities."""
    centres = [(painted[:, c, None] * cells).sum(0) / painted[:, c].sum().clamp_min(1e-8) for c in (subject, obj)]
    offset = (centres[0] - centres[1]).tolist()  # (row, column): "below" is a larger row
    axis, sign = PLANAR_AXES[relation]
    return offset[axis] * sign > 0 and abs(offset[axis]) > abs(offset[1 - axis])
