"""Scale-out on Ray: fold jobs as Ray tasks (``train-folds --ray``) and batch scoring with an actor pool of
ensembles over Ray Data (``predict --ray``). Ray is an optional extra, imported only when asked for."""
