# %% answer id=perplexity
# exp of the mean of the batches' mean losses (weights a short batch's tokens more)
def perplexity(model, batches):
    with torch.no_grad():
        losses = [model(input_ids=b["input_ids"], labels=b["labels"]).loss.item() for b in batches]
    return math.exp(sum(losses) / len(losses))
