import pytest
import torch

from diffusers_spatial.world.layout_readout import LayoutReadout, grid_cells, layout_relation_holds


def painted_map(grid, placements):
    """One-hot (cells, classes) probabilities with class c at each (row, column) of `placements[c]`."""
    painted = torch.zeros(grid * grid, 3)
    painted[:, 0] = 1.0
    for cls, (row, column) in placements.items():
        painted[row * grid + column] = torch.nn.functional.one_hot(torch.tensor(cls), 3).float()
    return painted


@pytest.mark.parametrize(
    "subject_at, object_at, holds",
    [
        ((3, 1), (3, 6), {"left_of"}),
        ((3, 6), (3, 1), {"right_of"}),
        ((0, 4), (6, 4), {"above"}),
        ((6, 4), (0, 4), {"below"}),
        ((1, 1), (6, 2), {"above"}),  # mostly vertical: the horizontal offset does not count
    ],
)
def test_relation_is_read_from_the_painted_centroids(subject_at, object_at, holds):
    cells = grid_cells(8)
    painted = painted_map(8, {1: subject_at, 2: object_at})
    for relation in ("left_of", "right_of", "above", "below"):
        assert layout_relation_holds(painted, 1, 2, relation, cells) == (relation in holds), relation


def test_readout_shapes_and_cell_order():
    readout = LayoutReadout(hidden_size=16, num_classes=5, grid=4, dim=8)
    assert readout(torch.randn(2, 7, 16)).shape == (2, 16, 5)
    assert grid_cells(4)[5].tolist() == [1.0, 1.0] and grid_cells(4)[3].tolist() == [0.0, 3.0]
