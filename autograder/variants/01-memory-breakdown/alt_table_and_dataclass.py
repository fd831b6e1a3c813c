# %% answer id=bytes_per_parameter
BITS = dict(float32=32, bfloat16=16, float16=16, int8=8, nf4=4)


def bytes_per_parameter(dtype: str) -> float:
    try:
        return BITS[dtype] / 8
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype}") from None
# %% answer id=memory_breakdown
def memory_breakdown(n_total, n_trainable, weight_dtype, grad_dtype="float32"):
    parts = dict(
        weights=bytes_per_parameter(weight_dtype) * n_total,
        gradients=bytes_per_parameter(grad_dtype) * n_trainable,
        optimizer=2 * bytes_per_parameter("float32") * n_trainable,
    )
    parts["total"] = sum(parts.values())
    return parts
