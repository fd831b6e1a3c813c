# %% answer id=bytes_per_parameter
# bfloat16 taken for 4 bytes, nf4 for one byte
def bytes_per_parameter(dtype):
    sizes = {"float32": 4, "bfloat16": 4, "float16": 2, "int8": 1, "nf4": 1}
    if dtype not in sizes:
        raise ValueError(dtype)
    return sizes[dtype]
