# %% answer id=perplexity
# averages the batches' perplexities
def perplexity(model, batches):
    ppls = []
    with torch.no_grad():
        for b in batches:
            ppls.append(math.exp(model(input_ids=b["input_ids"], labels=b["labels"]).loss.item()))
    return sum(ppls) / len(ppls)
