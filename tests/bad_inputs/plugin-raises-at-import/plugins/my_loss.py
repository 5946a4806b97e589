raise RuntimeError("set MY_LOSS_HOME first")
