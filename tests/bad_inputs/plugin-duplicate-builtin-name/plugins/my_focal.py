import runner


@runner.hookimpl
def register_losses(register):
    register("focal", lambda ctx, options: None)
