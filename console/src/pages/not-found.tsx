// A path no page answers.

import { Link } from "../router.tsx";

export function NotFoundPage() {
  return (
    <div className="page">
      <h1>Not found</h1>
      <p>
        No page at <code>{window.location.pathname}</code>. <Link to="/">Back to the overview</Link>.
      </p>
    </div>
  );
}
