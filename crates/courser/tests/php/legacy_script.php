<?php
// A classic PHP script, as PHP-FPM runs it (tests/legacy.rs); ?do= picks what it does.
$do = $_GET['do'] ?? 'dump';
$carried = isset($mine) ? 'yes' : 'no';
$mine = 'set by an earlier request';

if ($do === 'headers') {
    header('X-Legacy: yes');
    header('Cache-Control: no-store');
    setcookie('first', 'one two', ['path' => '/', 'httponly' => true]);
    setcookie('second', '2');
    http_response_code(201);
    echo "hello from echo\n";
    echo 'status=', http_response_code(), "\n";
    return;
}

if ($do === 'redirect') {
    header('Location: /after-redirect');
    exit;
}

if ($do === 'fatal') {
    echo 'half a page;';
    eval('function courser_e2e_twice() {} function courser_e2e_twice() {}');
}

$files = [];
foreach ($_FILES as $field => $file) {
    $files[$field] = [$file['name'], $file['type'], $file['size'], $file['error'], is_file($file['tmp_name']) ? file_get_contents($file['tmp_name']) : null];
}
$server = [];
foreach (['REQUEST_METHOD', 'REQUEST_URI', 'QUERY_STRING', 'REMOTE_ADDR', 'HTTP_X_TEST', 'HTTPS', 'CONTENT_TYPE', 'SCRIPT_NAME', 'SCRIPT_FILENAME', 'PHP_SELF'] as $key) {
    $server[$key] = $_SERVER[$key] ?? null;
}
header('Content-Type: application/json');
echo json_encode([
    'pid' => getmypid(),
    'carried' => $carried,
    'get' => $_GET,
    'post' => $_POST,
    'cookie' => $_COOKIE,
    'request' => $_REQUEST,
    'files' => $files,
    'server' => $server,
], JSON_UNESCAPED_SLASHES);
