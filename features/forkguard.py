"""One process-wide lock between seeding torch's global generator and forking DataLoader workers.

``torch.manual_seed`` holds ``torch.cuda``'s initialisation lock while it queues the CUDA seed. A worker process
forked while another thread holds that lock inherits it locked and hangs in its own ``manual_seed`` (seen with
the image and video extractions running concurrently in one flow: one thread building a random-init model, the
other starting its decoding workers). Seeding and forking under this lock keeps them apart; it is held only for
the build of a CLIP model (random or from a weights file: both draw from the default generator while the
model is initialised) and for the start of a loader's workers.
"""

from __future__ import annotations

import threading

SEED_OR_FORK = threading.Lock()
