"""The book's diagrams are drawn from the numbers they are given, so a chapter's figure follows its own shapes."""

from matplotlib.figure import Figure

from lora_course.viz.diagrams import accumulation_window, checkpointing, lora_branch


def _texts(fig: Figure) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])


def test_the_lora_branch_shows_the_layers_shapes_and_counts():
    text = _texts(lora_branch(64, 96, 4, alpha=8))
    assert "96 x 64" in text and "A  4 x 64" in text and "B  96 x 4" in text
    assert "r(d_in + d_out) = 640" in text and "d_in x d_out = 6,144" in text and "alpha/r = 2" in text


def test_checkpointing_keeps_inputs_and_recomputes_one_layer():
    fig = checkpointing(5, backward_at=2)
    colors = [p.get_facecolor() for p in fig.axes[0].patches]
    assert len(colors) == 3 * 5 * 3  # three rows, five layers, three parts each
    recomputed = [c for c in colors if c[:3] == (0xbc / 255, 0x4b / 255, 0x51 / 255)]
    assert len(recomputed) == 2  # attention and MLP of the one layer backward is at
    assert "backward at L2" in _texts(fig)


def test_the_accumulation_window_has_one_box_per_micro_batch():
    text = _texts(accumulation_window(3, [2, 1, 2]))
    assert text.count("micro-batch ") == 3 and "1 row(s)" in text and "3 micro-batches" in text


def test_a_diagram_shows_itself_as_an_image_in_a_notebook():
    assert lora_branch(16, 16, 2, alpha=4)._repr_png_().startswith(b"\x89PNG")
