"""Making a kernel's process go: through jupyter_client, and by force where that fails.

No process may outlive its record, so each way of stopping ends in a kill when the
polite way fails; the registry decides when to stop, these only make it happen. They
reach a kernel only through jupyter_client's managers and provisioners, never by pid.
"""

from __future__ import annotations

import asyncio
import logging

from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from kernels_service.kernels.record import KernelRecord

log = logging.getLogger("kernels_service.kernels")


async def stop_process(multi: AsyncMultiKernelManager, record: KernelRecord, now: bool = False) -> None:
    """Shut the kernel down through jupyter_client (which logs "Kernel shutdown: <id>");
    if that fails midway, kill it. `now`: the kernel has not started, it is killed before
    jupyter_client is asked."""
    if now:
        await kill_unstarted(record)
    try:
        await multi.shutdown_kernel(record.id, now=now)
    except KeyError:  # already gone from jupyter_client's side
        return
    except Exception as error:  # noqa: BLE001 - whatever jupyter_client raised, the process must go
        log.warning("Shutting down kernel %s failed (%r); killing it", record.id, error)
        try:
            await record.manager.shutdown_kernel(now=True)
        except Exception as kill_error:  # noqa: BLE001
            log.warning("Killing kernel %s failed too: %r", record.id, kill_error)
        multi.remove_kernel(record.id)


async def kill_unstarted(record: KernelRecord) -> None:
    """Kill a kernel that has not started before jupyter_client stops or restarts it:
    jupyter_client always interrupts first, even with now=True, and a SIGINT kills a
    kernel still importing its modules with a KeyboardInterrupt traceback in the log.
    Its process gone, jupyter_client only cleans up (or launches the new one)."""
    manager = record.manager
    manager.stop_restarter()  # it must not restart the process killed here
    provisioner = manager.provisioner
    if provisioner is None:
        return
    try:
        await provisioner.kill()
        await asyncio.wait_for(provisioner.wait(), 5)
    except Exception as error:  # noqa: BLE001 - jupyter_client's shutdown follows and kills
        log.warning("Killing kernel %s before it started failed: %r", record.id, error)


async def kill_everything(multi: AsyncMultiKernelManager) -> None:
    """Kill every kernel jupyter_client still runs (a stop that ran out of time)."""
    for kernel_id in multi.list_kernel_ids():
        provisioner = multi.get_kernel(kernel_id).provisioner
        try:
            if provisioner is not None:
                await provisioner.kill()
                await asyncio.wait_for(provisioner.wait(), 2)
        except Exception as error:  # noqa: BLE001 - the next kernel must still be killed
            log.warning("Killing kernel %s failed: %r", kernel_id, error)
