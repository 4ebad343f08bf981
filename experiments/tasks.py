def enqueue_advance(experiment_id):  # being written
    raise NotImplementedError
