# %% answer id=forward
# ignores the flag: same results, no memory saved
def forward(blocks, x, checkpointed):
    for block in blocks:
        x = block(x)
    return x
