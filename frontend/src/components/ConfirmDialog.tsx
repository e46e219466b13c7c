import { useEffect, useId, useRef, type ReactNode } from "react";

/**
 * A modal confirmation: the browser's `<dialog>` opened with `showModal()`, so the rest of the page
 * is inert (Tab stays inside), Escape cancels, and focus goes back to where it was on close.
 */
export function ConfirmDialog({
  title,
  children,
  actions,
  onCancel,
}: {
  title: string;
  children: ReactNode;
  /** The dialog's buttons besides Cancel (the first one gets the focus). */
  actions: ReactNode;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const cancel = useRef(onCancel);
  cancel.current = onCancel;
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    if (typeof dialog.showModal === "function" && !dialog.open) dialog.showModal();
    else dialog.setAttribute("open", "");
    dialog.querySelector<HTMLElement>(".dialog-actions .btn")?.focus();
    return () => {
      if (dialog.open && typeof dialog.close === "function") dialog.close();
      // the opener may have been re-rendered away: then the page's main region takes the focus
      if (opener?.isConnected) opener.focus();
      else document.getElementById("main")?.focus();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      className="dialog card"
      aria-labelledby={titleId}
      onKeyDown={(e) => {
        // Tab and Shift+Tab go round the dialog's own controls, never out to the browser's
        if (e.key !== "Tab") return;
        const controls = [...e.currentTarget.querySelectorAll<HTMLElement>("button:not([disabled]), a[href], [tabindex]:not([tabindex='-1'])")];
        const first = controls[0];
        const last = controls[controls.length - 1];
        if (!first || !last) return;
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first.focus();
        }
      }}
      onCancel={(e) => {
        // Escape: closed by React (unmount), not by the browser behind its back
        e.preventDefault();
        cancel.current();
      }}
    >
      <h2 id={titleId} className="card-title">
        {title}
      </h2>
      <div className="dialog-body">{children}</div>
      <div className="dialog-actions">
        {actions}
        <button type="button" className="btn" onClick={() => cancel.current()}>
          Cancel
        </button>
      </div>
    </dialog>
  );
}
