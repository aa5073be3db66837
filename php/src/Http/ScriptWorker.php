<?php

declare(strict_types=1);

namespace Courser\Http;

use Courser\Http\Legacy\Context;
use Courser\Http\Legacy\Includes;
use Courser\Http\Legacy\ScriptCache;

/**
 * Plain mode: runs a classic PHP script, written for PHP-FPM, once per
 * request, in a worker that stays up between requests.
 *
 * <code>
 * <?php // worker.php
 * require __DIR__ . '/vendor/autoload.php';
 *
 * use Courser\Http\ScriptWorker;
 *
 * ScriptWorker::create(__DIR__ . '/public/index.php');
 *
 * while (ScriptWorker::accept()) {
 *     try {
 *         require ScriptWorker::script();
 *     } catch (\Throwable $e) {
 *         ScriptWorker::fail($e);
 *     }
 *     ScriptWorker::finish();
 * }
 * </code>
 *
 * The loop runs in the worker file's global scope on purpose: the script's
 * top-level variables are globals, as under PHP-FPM, so "global $db;" in its
 * functions works. The loop uses static methods, not a variable, because
 * the script may assign any global; finish() unsets the globals the script
 * created and puts back the ones the worker had, so no variable carries
 * over to the next request.
 *
 * Per request, accept() fills $_GET, $_POST, $_COOKIE, $_FILES, $_REQUEST
 * and $_SERVER (Globals::populate(), plus SCRIPT_FILENAME, SCRIPT_NAME,
 * PHP_SELF, PATH_INFO, DOCUMENT_ROOT; no argv), sets the status to 200,
 * changes into the script's directory (as PHP-FPM does) and starts
 * capturing output: what the script echoes is the response body, sent in
 * one frame up to $bufferSize bytes, and streamed in $chunkSize frames
 * beyond that (or from the first flush()). The status is
 * http_response_code(); the headers are what header(), setcookie(),
 * setrawcookie(), session_start() and friends set.
 *
 * The CLI drops header() and setcookie(), so the script runs from a
 * rewritten copy (see Legacy\Rewriter and Legacy\ScriptCache) in which
 * those calls, the output-buffering functions, exit and include go through
 * Legacy\Functions and Legacy\Includes. Files that the script includes from
 * the rewrite roots (by default the document root, the script's directory
 * and the worker file's directory, without vendor/ directories) are
 * rewritten too; anything else runs as it is. For rewritten files,
 * include_once and require_once mean once per request: a config.php that
 * the script loads with require_once runs again on every request, so the
 * globals it sets are there although finish() unset them after the last.
 *
 * exit() and die() end the process, as they always do in PHP. In plain mode
 * they are the normal end of many scripts ("header('Location: /'); exit;"),
 * so the response is what the script produced, as PHP-FPM would send it:
 * its status, headers and output. The worker logs one line and exits, and
 * the server starts another in its place. A fatal error is handled the
 * same way, with the status 500 when it was 200 (PHP's own rule).
 */
final class ScriptWorker
{
    /** Globals that are the request's, not the worker's: never restored or unset. */
    private const SUPERGLOBALS = ['GLOBALS', '_GET', '_POST', '_COOKIE', '_FILES', '_SERVER', '_ENV', '_REQUEST', '_SESSION'];

    private static ?self $current = null;

    private readonly string $script;

    private readonly string $scriptName;

    private readonly string $documentRoot;

    private readonly ScriptCache $cache;

    private ?Request $request = null;

    private ?Context $context = null;

    /** The rewritten copy to include for the current request. */
    private string $scriptPath = '';

    /** Output captured and not sent yet. */
    private string $pending = '';

    /** Whether the headers and part of the body have gone out. */
    private bool $streaming = false;

    /** @var array{0: int, 1: array<string, list<string>>}|null the status and headers sent with the first frame */
    private ?array $sent = null;

    private bool $responded = false;

    /** @var array<array-key, mixed>|null the worker's globals before the first request */
    private ?array $globals = null;

    private string $workingDirectory = '';

    /**
     * @param string        $script        the script to run (index.php); in $routeScripts mode, the
     *                                     one that runs when the path names no script
     * @param string|null   $documentRoot  the directory that URL paths map to (DOCUMENT_ROOT, SCRIPT_NAME);
     *                                     the script's directory by default
     * @param bool          $routeScripts  let the URL path pick the script, as nginx and PHP-FPM do:
     *                                     /admin/users.php runs that file (with PATH_INFO for
     *                                     /x.php/more), /dir/ runs /dir/index.php; any other path runs $script
     * @param list<string>|null $rewriteRoots directories whose included files are rewritten too;
     *                                     null for the document root, the script's directory and
     *                                     the directory of the worker file (the process's main script)
     * @param list<string>  $rewriteExclude directory names under the roots whose files are not rewritten
     * @param string|null   $cacheDir      where rewritten copies go (see ScriptCache)
     * @param int           $bufferSize    output held back before the response is streamed
     * @param int           $chunkSize     the size of streamed chunks
     * @param string|null   $requestOrder  the $_REQUEST merge order (request_order by default)
     */
    public function __construct(
        private readonly HttpWorker $http,
        string $script,
        ?string $documentRoot = null,
        private readonly bool $routeScripts = false,
        ?array $rewriteRoots = null,
        array $rewriteExclude = ['vendor'],
        ?string $cacheDir = null,
        private readonly int $bufferSize = 1 << 20,
        private readonly int $chunkSize = 256 << 10,
        private readonly ?string $requestOrder = null,
    ) {
        $real = realpath($script);
        if ($real === false || !is_file($real)) {
            throw new \InvalidArgumentException(sprintf('The script %s does not exist.', $script));
        }
        $root = realpath($documentRoot ?? dirname($real));
        if ($root === false || !is_dir($root)) {
            throw new \InvalidArgumentException(sprintf('The document root %s is not a directory.', (string) $documentRoot));
        }
        if ($bufferSize < 0 || $chunkSize < 1) {
            throw new \InvalidArgumentException('The buffer size must be 0 or more, and the chunk size 1 or more.');
        }
        $this->script = $real;
        $this->documentRoot = $root;
        $this->scriptName = str_starts_with($real, $root . '/') ? substr($real, strlen($root)) : '/' . basename($real);
        $this->cache = new ScriptCache($cacheDir);
        if ($rewriteRoots === null) {
            // The document root, the script's directory, and the directory of the worker file
            // (usually the application's root, next to lib/, src/, templates/).
            $rewriteRoots = [$root, dirname($real)];
            $main = get_included_files()[0] ?? null;
            if (is_string($main) && $main !== '') {
                $rewriteRoots[] = dirname($main);
            }
        }
        Includes::configure($this->cache, array_values(array_unique($rewriteRoots)), $rewriteExclude);

        $http->onShutdown($this->onShutdown(...), $this->cache->mapPaths(...));
        self::$current = $this;
    }

    /**
     * A ScriptWorker on the relay named by RR_RELAY; see the constructor
     * for the options. It becomes the current one, which the static loop
     * methods use.
     *
     * @param list<string>|null $rewriteRoots
     * @param list<string>      $rewriteExclude
     */
    public static function create(
        string $script,
        bool $redirectOutput = true,
        ?string $documentRoot = null,
        bool $routeScripts = false,
        ?array $rewriteRoots = null,
        array $rewriteExclude = ['vendor'],
        ?string $cacheDir = null,
        int $bufferSize = 1 << 20,
        int $chunkSize = 256 << 10,
        ?string $requestOrder = null,
    ): self {
        return new self(HttpWorker::create($redirectOutput), $script, $documentRoot, $routeScripts, $rewriteRoots, $rewriteExclude, $cacheDir, $bufferSize, $chunkSize, $requestOrder);
    }

    /**
     * The current ScriptWorker (the last one created).
     *
     * @throws \LogicException when there is none
     */
    public static function current(): self
    {
        return self::$current ?? throw new \LogicException('No ScriptWorker has been created.');
    }

    /**
     * Waits for the next request and prepares it; false when the server
     * stops the worker (leave the loop and let the process end).
     */
    public static function accept(): bool
    {
        return self::current()->next();
    }

    /**
     * The file to require for the current request: the rewritten copy of
     * the script.
     */
    public static function script(): string
    {
        return self::current()->scriptPath;
    }

    /**
     * Ends the current request with what the script produced; see end().
     */
    public static function finish(): void
    {
        self::current()->end();
    }

    /**
     * Handles an exception that the script did not catch; see handleThrowable().
     */
    public static function fail(\Throwable $e): void
    {
        self::current()->handleThrowable($e);
    }

    /**
     * The request being handled (its raw body is there: php://input is
     * empty in the CLI), or null between requests.
     */
    public static function request(): ?Request
    {
        return self::$current?->request;
    }

    public function getHttpWorker(): HttpWorker
    {
        return $this->http;
    }

    /**
     * Waits for a request and begins it. Requests for a script that does not
     * exist (in $routeScripts mode, a .php path) are answered 404 here, and
     * the wait goes on.
     */
    public function next(): bool
    {
        if ($this->request !== null) {
            $this->end();
        }
        while (($request = $this->http->waitRequest()) !== null) {
            try {
                $this->begin($request);

                return true;
            } catch (\Throwable $e) {
                $this->abandonBegin($e);
            }
        }

        return false;
    }

    /**
     * Sets up everything for one request: superglobals, status, working
     * directory, output capture. Returns the file to require.
     *
     * @throws \RuntimeException when the script cannot be rewritten
     * @throws \DomainException  when the path names a PHP script that does not exist
     */
    public function begin(Request $request): string
    {
        if ($this->request !== null) {
            $this->end();
        }
        $this->globals ??= self::snapshotGlobals();

        [$file, $scriptName, $pathInfo] = $this->route($request);
        $this->scriptPath = $this->cache->compile($file);

        $this->request = $request;
        $this->context = new Context($request);
        $this->context->markIncluded($file);
        Context::activate($this->context);
        $this->pending = '';
        $this->streaming = false;
        $this->sent = null;
        $this->responded = false;

        Globals::populate($request, $this->requestOrder);
        $server = $_SERVER;
        unset($server['argv'], $server['argc'], $server['PATH_INFO'], $server['PATH_TRANSLATED']);
        $server['SCRIPT_FILENAME'] = $file;
        $server['SCRIPT_NAME'] = $scriptName;
        $server['PHP_SELF'] = $scriptName . $pathInfo;
        $server['DOCUMENT_ROOT'] = $this->documentRoot;
        $server['GATEWAY_INTERFACE'] = 'CGI/1.1';
        $server['SERVER_SOFTWARE'] = 'Courser';
        if ($pathInfo !== '') {
            $server['PATH_INFO'] = $pathInfo;
            $server['PATH_TRANSLATED'] = $this->documentRoot . $pathInfo;
        }
        $_SERVER = $server;

        \http_response_code(200);
        if (function_exists('session_status') && \session_status() === PHP_SESSION_NONE && !\headers_sent()) {
            $name = (string) \session_name();
            $id = $request->cookies[$name] ?? '';
            \session_id($id);
            $this->context->initialSessionId = $id;
        }

        $cwd = getcwd();
        $this->workingDirectory = $cwd === false ? '' : $cwd;
        @chdir(dirname($file));

        ob_start($this->capture(...), $this->chunkSize);
        $this->context->baseLevel = ob_get_level();
        $this->context->flusher = $this->flushOutput(...);

        return $this->scriptPath;
    }

    /**
     * Ends the request: runs the shutdown functions the script registered,
     * closes its output buffers (their contents are part of the body, as
     * when PHP ends a script), writes the session, sends the response, then
     * resets what the script changed (error and exception handlers, globals,
     * the working directory).
     */
    public function end(): void
    {
        if ($this->request === null) {
            return;
        }
        try {
            $this->complete();
        } finally {
            $this->reset(true);
        }
    }

    /**
     * What PHP does with an exception that nothing caught: the handler set
     * with set_exception_handler() runs (its output is part of the page);
     * without one, the error is logged as "PHP Fatal error:  Uncaught ..."
     * and the status becomes 500 if it was 200. The output so far is kept,
     * as PHP-FPM keeps it. Call end() (finish()) afterwards.
     */
    public function handleThrowable(\Throwable $e): void
    {
        if ($this->request === null) {
            throw $e;
        }
        $handler = set_exception_handler(null);
        restore_exception_handler();
        if ($handler !== null) {
            try {
                $handler($e);

                return;
            } catch (\Throwable $inHandler) {
                $e = $inHandler;
            }
        }
        $this->logUncaught($e);
        if (\http_response_code() === 200) {
            \http_response_code(500);
        }
    }

    /**
     * Sends the response, once.
     */
    private function complete(): void
    {
        $context = $this->context;
        if ($context === null) {
            return;
        }

        // Shutdown functions may register more: take them one at a time.
        while (($function = array_shift($context->shutdownFunctions)) !== null) {
            try {
                ($function[0])(...$function[1]);
            } catch (\Throwable $e) {
                $this->logUncaught($e);
            }
        }

        $this->closeOutput();

        if (function_exists('session_status') && \session_status() === PHP_SESSION_ACTIVE) {
            if (!$this->streaming) {
                $context->send();
            }
            \session_write_close();
        }

        if (!$this->responded) {
            $this->responded = true;
            if ($this->streaming && $this->sent !== null) {
                $this->http->respond($this->sent[0], $this->pending, $this->sent[1]);
            } else {
                $headers = $context->send();
                $this->http->respond(self::status(), $this->pending, $headers);
            }
            $this->pending = '';
        }
    }

    /**
     * Flushes the script's buffers into Courser's and ends that one, so that
     * all output has reached capture().
     */
    private function closeOutput(): void
    {
        $context = $this->context;
        if ($context === null || $context->baseLevel === null) {
            return;
        }
        $base = $context->baseLevel;
        $context->baseLevel = null;
        $context->flusher = null;

        while (ob_get_level() > $base) {
            if (!@ob_end_flush()) {
                break;
            }
        }
        if (ob_get_level() === $base) {
            ob_end_flush();
        } else {
            fwrite(STDERR, sprintf(
                "courser: the script removed Courser's output buffer (more ob_end_*() calls than ob_start() in code that is not rewritten) while handling %s; output after that went to the log, not to the client\n",
                $this->describe(),
            ));
        }
    }

    /**
     * Undoes what the request changed in the process.
     */
    private function reset(bool $restoreGlobals): void
    {
        $context = $this->context;
        if ($context !== null) {
            for ($i = 0; $i < $context->errorHandlers; ++$i) {
                restore_error_handler();
            }
            for ($i = 0; $i < $context->exceptionHandlers; ++$i) {
                restore_exception_handler();
            }
            if ($context->baseLevel !== null) {
                // end() failed before the output was closed: drop it.
                while (ob_get_level() >= $context->baseLevel && @ob_end_clean()) {
                }
                $context->baseLevel = null;
            }
        }
        Context::activate(null);
        $this->context = null;
        $this->request = null;
        $this->pending = '';
        if (isset($_SESSION)) {
            $_SESSION = [];
        }
        $_GET = $_POST = $_COOKIE = $_FILES = $_REQUEST = [];
        if ($this->workingDirectory !== '') {
            @chdir($this->workingDirectory);
        }
        if ($restoreGlobals && $this->globals !== null) {
            foreach (array_keys($GLOBALS) as $name) {
                if (!array_key_exists($name, $this->globals) && !in_array($name, self::SUPERGLOBALS, true)) {
                    unset($GLOBALS[$name]);
                }
            }
            foreach ($this->globals as $name => $value) {
                $GLOBALS[$name] = $value;
            }
        }
    }

    /**
     * The output callback: holds output until there is more than
     * $bufferSize, then streams it.
     */
    private function capture(string $buffer, int $phase): string
    {
        if ($buffer === '' || $this->request === null || $this->responded) {
            return '';
        }
        if (!$this->streaming) {
            $this->pending .= $buffer;
            if (strlen($this->pending) > $this->bufferSize) {
                $this->startStream();
            }
        } elseif (($phase & PHP_OUTPUT_HANDLER_FINAL) !== 0) {
            // The rest rides in the final frame.
            $this->pending .= $buffer;
        } else {
            $this->sendChunks($buffer);
        }

        return '';
    }

    /**
     * flush(): sends the headers and the output so far.
     */
    private function flushOutput(): void
    {
        $context = $this->context;
        if ($context === null || $context->baseLevel === null || $this->responded) {
            return;
        }
        if (ob_get_level() === $context->baseLevel) {
            ob_flush();
        }
        if (!$this->streaming) {
            $this->startStream();
        } elseif ($this->pending !== '') {
            $pending = $this->pending;
            $this->pending = '';
            $this->sendChunks($pending);
        }
    }

    /**
     * Sends the headers with the output held so far: the response is now
     * streamed.
     */
    private function startStream(): void
    {
        $context = $this->context;
        if ($context === null) {
            return;
        }
        $this->sent = [self::status(), $context->send()];
        $this->streaming = true;
        $pending = $this->pending;
        $this->pending = '';
        if ($pending === '') {
            $this->http->respond($this->sent[0], '', $this->sent[1], false);
        } else {
            $this->sendChunks($pending);
        }
    }

    private function sendChunks(string $data): void
    {
        if ($this->sent === null) {
            return;
        }
        for ($offset = 0, $length = strlen($data); $offset < $length; $offset += $this->chunkSize) {
            $this->http->respond($this->sent[0], substr($data, $offset, $this->chunkSize), $this->sent[1], false);
        }
    }

    /**
     * The HttpWorker's shutdown handler: exit(), die() or a fatal error
     * during a request ends it as PHP-FPM would, with what the script
     * produced.
     *
     * @param array{type: int, message: string, file: string, line: int}|null $fatal
     */
    private function onShutdown(?array $fatal): void
    {
        if ($this->request === null) {
            return;
        }
        if ($fatal !== null && \http_response_code() === 200) {
            \http_response_code(500);
        }
        try {
            $this->complete();
        } finally {
            $this->reset(false);
        }
    }

    /**
     * Picks the script for a request.
     *
     * @return array{0: string, 1: string, 2: string} the real path, SCRIPT_NAME and PATH_INFO
     *
     * @throws \DomainException when a .php path names no script
     */
    private function route(Request $request): array
    {
        if (!$this->routeScripts) {
            return [$this->script, $this->scriptName, ''];
        }
        $path = parse_url($request->uri, PHP_URL_PATH);
        $path = rawurldecode(is_string($path) && $path !== '' ? $path : '/');
        if (str_contains($path, "\0")) {
            return [$this->script, $this->scriptName, ''];
        }

        if (preg_match('#^(.*?\.php)(/.*)?$#', $path, $match) === 1) {
            $real = realpath($this->documentRoot . $match[1]);
            if ($real === false || !is_file($real) || !str_starts_with($real, $this->documentRoot . '/')) {
                throw new \DomainException(sprintf('No script at %s.', $match[1]));
            }

            return [$real, $match[1], $match[2] ?? ''];
        }
        if (str_ends_with($path, '/')) {
            $real = realpath($this->documentRoot . $path . 'index.php');
            if ($real !== false && is_file($real) && str_starts_with($real, $this->documentRoot . '/')) {
                return [$real, $path . 'index.php', ''];
            }
        }

        return [$this->script, $this->scriptName, ''];
    }

    /**
     * Answers a request that could not begin: 404 for a missing script, 500
     * otherwise (logged).
     */
    private function abandonBegin(\Throwable $e): void
    {
        $this->reset(true);
        if ($e instanceof \DomainException) {
            $this->http->respond(404, "Not Found\n", ['Content-Type' => ['text/plain; charset=utf-8']]);

            return;
        }
        fwrite(STDERR, 'courser: cannot run the script: ' . $e->getMessage() . "\n");
        $this->http->respond(500, "Internal Server Error\n", ['Content-Type' => ['text/plain; charset=utf-8']]);
    }

    /**
     * Logs an uncaught exception as PHP does, with the original paths.
     */
    private function logUncaught(\Throwable $e): void
    {
        fwrite(STDERR, $this->cache->mapPaths(sprintf(
            "PHP Fatal error:  Uncaught %s\n  thrown in %s on line %d\n",
            (string) $e,
            $e->getFile(),
            $e->getLine(),
        )));
    }

    private function describe(): string
    {
        $request = $this->request;
        if ($request === null) {
            return 'a request';
        }
        $path = parse_url($request->uri, PHP_URL_PATH);

        return $request->method . ' ' . (is_string($path) && $path !== '' ? $path : '/');
    }

    private static function status(): int
    {
        $status = \http_response_code();

        return is_int($status) && $status > 0 ? $status : 200;
    }

    /**
     * @return array<array-key, mixed>
     */
    private static function snapshotGlobals(): array
    {
        $globals = [];
        foreach ($GLOBALS as $name => $value) {
            if (!in_array($name, self::SUPERGLOBALS, true)) {
                $globals[$name] = $value;
            }
        }

        return $globals;
    }
}
