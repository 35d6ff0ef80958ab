// Files dropped anywhere on the page go to the queue; a file dropped outside the drop zone must not
// make the browser navigate away from the page.

export function wireDrop(zone, preview, addFiles) {
  let depth = 0;
  const dragging = (on) => {
    zone.classList.toggle("dragging", on);
    preview.classList.toggle("dragging", on);
  };
  document.addEventListener("dragenter", (event) => {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    depth += 1;
    dragging(true);
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dragging(false);
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    dragging(false);
    addFiles(event.dataTransfer?.files);
  });
}
