"""OmegaConf resolvers used by conf/; registered at import (with replace=True, so importing twice is fine)."""

import os

from omegaconf import OmegaConf

# A sweep dir named only by the second it started collides with another sweep started in the same second.
OmegaConf.register_new_resolver("facebias.pid", lambda: str(os.getpid()), replace=True, use_cache=True)
# ${oc.select:key,default} keeps a null value; run-dir names want the default then.
OmegaConf.register_new_resolver("facebias.or", lambda value, default: default if value is None else value,
                                replace=True)
# The launch directory, usable where ${hydra:runtime.cwd} is not yet set (a multirun's sweep dir).
OmegaConf.register_new_resolver("facebias.cwd", os.getcwd, replace=True, use_cache=True)
