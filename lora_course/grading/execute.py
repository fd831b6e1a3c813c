"""nbgrader's Execute step, with the guard around test cells and a dead kernel recorded instead of aborting."""

from __future__ import annotations

import json
import os
import signal

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbformat.v4 import new_code_cell
from nbgrader.preprocessors import Execute

from lora_course.grading.sandbox_limits import ENDING_ENV, read_ending

# what the last notebook's run found: read by the worker, which runs nbgrader in this same process
LAST_RUN: dict = {}
GUARD = "__import__('lora_course.grading.guard').grading.guard"


def error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class GuardedExecute(Execute):
    # the kernel's whole environment when set (the worker sets it): nothing of the grader's own is inherited
    kernel_env: dict | None = None

    async def async_start_new_kernel(self, **kwargs):
        if self.kernel_env is not None:
            kwargs["env"] = dict(self.kernel_env)
        return await super().async_start_new_kernel(**kwargs)

    start_new_kernel = run_sync(async_start_new_kernel)

    def preprocess(self, nb, resources=None, km=None):
        self._dead = None
        self._started = False
        self._timed_out: list[int] = []
        self.tampering: list[str] = []
        LAST_RUN.clear()
        return super().preprocess(nb, resources, km)

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out.append(self._index)
        return await super()._async_handle_timeout(timeout, cell)

    def _label(self, index: int) -> str:
        grade_id = self.nb.cells[index].metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {index}" + (f" ({grade_id})" if grade_id else "")

    def _stop_kernel(self) -> None:
        """Kill the kernel's relay (the kernel dies with it); used when it ignores the interrupt."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _silent(self, code: str, index: int) -> str:
        cell = new_code_cell(code)
        original = self.nb.cells[index]
        try:
            self.execute_cell(cell, index, store_history=False)
        finally:
            self.nb.cells[index] = original  # nbclient stores the executed cell at its index
        return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")

    def _report(self, text: str, key: str) -> list[str]:
        for line in text.splitlines():
            try:
                return list(json.loads(line).get(key, []))
            except (ValueError, AttributeError):
                continue
        return ["the guard's report is missing (was print or the guard replaced?)"]

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, self.resources
        meta = cell.metadata.get("nbgrader", {})
        test = bool(meta.get("grade")) and not meta.get("solution")
        trusted = test or bool(meta.get("locked"))
        if self._dead:
            cell.outputs = [error_output("KernelDied", self._dead)]
            return cell, self.resources
        self._index = index
        try:
            if not self._started:
                self._started = True
                self._silent(f"{GUARD}.snapshot_shell()", index)
            if trusted:  # undoes what student cells changed before a locked cell or a test runs
                restored = self._report(self._silent(f"{GUARD}.begin_trusted()", index), "restored")
                self.tampering.extend(r for r in restored if r not in self.tampering)
            cell = self.execute_cell(cell, index, store_history=True)
            if test:  # before end_trusted, which would adopt the changes as the new reference
                during = self._report(self._silent(f"{GUARD}.after_test()", index), "during_test")
                if during:
                    self.tampering.extend(d for d in during if d not in self.tampering)
                    cell.outputs.append(error_output(
                        "TamperingDetected", "code called by this test changed what the test compares with: "
                        + ", ".join(during[:5])))
            if trusted:
                self._silent(f"{GUARD}.end_trusted()", index)
        except CellTimeoutError:  # the interrupt went unanswered: the kernel ignores SIGINT or is stuck in C code
            self._stop_kernel()
            # unless the relay was already stopping it at a limit (a fork bomb takes seconds to tear down)
            limit = read_ending((self.kernel_env or {}).get(ENDING_ENV), wait_s=0).get("reason")
            self._dead = f"{limit} (while running {self._label(index)})" if limit else (
                f"{self._label(index)} ran past the cell time limit of {self.timeout} s and ignored the interrupt "
                "(SIGINT); the kernel was stopped")
            cell.outputs.append(error_output("KernelDied", self._dead))
        except DeadKernelError as e:
            # the relay outside the kernel wrote why it ended (a limit, a crash, a signal, an exit)
            reason = read_ending((self.kernel_env or {}).get(ENDING_ENV)).get("reason") or \
                f"the kernel died ({str(e)[:200] or 'no message'}): memory limit, os._exit or a crash"
            self._dead = f"{reason} (while running {self._label(index)})"
            cell.outputs.append(error_output("KernelDied", self._dead))
        if index in self._timed_out and not self._dead:
            LAST_RUN.setdefault("interrupted", []).append(
                f"{self._label(index)} ran past the cell time limit of {self.timeout} s and was interrupted")
        LAST_RUN.update(tampering=list(self.tampering), kernel_died=self._dead)
        return cell, self.resources
