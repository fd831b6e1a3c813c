# %% answer id=memory_breakdown
# gradients in the weights' dtype, grad_dtype ignored (what PyTorch does for a parameter's own .grad, but not the
# exercise's setting): right whenever both dtypes are equal, as in full fine-tuning in fp32 or in bf16. Only the
# calls with different weight and gradient dtypes (bf16 weights with fp32 gradients, NF4 weights with the
# default fp32 gradients) catch it: without them it gets full marks.
def memory_breakdown(n_total, n_trainable, weight_dtype, grad_dtype="float32"):
    weights = n_total * bytes_per_parameter(weight_dtype)
    gradients = n_trainable * bytes_per_parameter(weight_dtype)
    optimizer = n_trainable * 2 * 4
    return {"weights": weights, "gradients": gradients, "optimizer": optimizer, "total": weights + gradients + optimizer}
