# %% answer id=memory_breakdown
# optimizer states stored in the weights' dtype (AdamW keeps them in fp32)
def memory_breakdown(n_total, n_trainable, weight_dtype, grad_dtype="float32"):
    weights = n_total * bytes_per_parameter(weight_dtype)
    gradients = n_trainable * bytes_per_parameter(grad_dtype)
    optimizer = n_trainable * 2 * bytes_per_parameter(weight_dtype)
    return {"weights": weights, "gradients": gradients, "optimizer": optimizer, "total": weights + gradients + optimizer}
