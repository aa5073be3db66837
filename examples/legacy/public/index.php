<?php
// A classic PHP page: no framework and no Courser API; it runs unchanged
// under PHP-FPM. Courser captures its header(), setcookie() and echo.
require_once __DIR__ . '/../lib/layout.php';

$name = trim((string) ($_GET['name'] ?? '')) ?: 'stranger';

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    // Post/redirect/get: remember the note, send the browser back. exit()
    // ends the request (and this worker: the server starts a new one).
    setcookie('note', trim((string) ($_POST['note'] ?? '')), ['path' => '/', 'httponly' => true, 'samesite' => 'Lax']);
    header('Location: /?name=' . rawurlencode($name));
    exit;
}

$visits = (int) ($_COOKIE['visits'] ?? 0) + 1;
setcookie('visits', (string) $visits, ['path' => '/', 'samesite' => 'Lax']);
header('X-Example: legacy');

page_header('Hello, ' . $name);
?>
<p>Visit number <?= $visits ?>, counted in a cookie set with setcookie().</p>
<?php if (($_COOKIE['note'] ?? '') !== ''): ?>
<p>Your note: <?= htmlspecialchars($_COOKIE['note']) ?></p>
<?php endif; ?>
<form method="post" action="/?name=<?= rawurlencode($name) ?>">
  <input name="note" placeholder="Leave a note"> <button>Save</button>
</form>
<p><a href="/about.php">About</a> &middot; <?= htmlspecialchars($_SERVER['SERVER_SOFTWARE']) ?>, worker <?= getmypid() ?></p>
<?php
page_footer();
