<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

use Courser\Http\Request;

/**
 * The state of one legacy request that PHP's web SAPIs keep for a script
 * and the CLI does not: the response headers (as header() builds them),
 * whether they have been sent, and what the script registered for the end
 * of the request. ScriptWorker makes one per request; Functions works on the
 * current one.
 *
 * The status code is not kept here: it lives in PHP itself
 * (http_response_code() works in the CLI), so that code that was not
 * rewritten sets it too.
 */
final class Context
{
    private static ?self $current = null;

    /** @var list<array{0: string, 1: string}> [lower-case name (or the whole line without a colon), line] in order */
    private array $headers = [];

    /** Whether the script set a Content-Type (then no default one is added, even after header_remove()). */
    private bool $contentTypeSet = false;

    private bool $headersSent = false;

    /** @var callable|null header_register_callback() */
    private $headerCallback = null;

    /** @var list<array{0: callable, 1: list<mixed>}> register_shutdown_function() of this request */
    public array $shutdownFunctions = [];

    /** How many error handlers the script pushed (set_error_handler() minus restore_error_handler()). */
    public int $errorHandlers = 0;

    /** How many exception handlers the script pushed. */
    public int $exceptionHandlers = 0;

    /** The ob_get_level() of Courser's capture buffer; the script's buffers are above it. Null: no capture. */
    public ?int $baseLevel = null;

    /** @var (\Closure(): void)|null what flush() does: sends the output so far to the client */
    public ?\Closure $flusher = null;

    /** Whether the script started a session in this request. */
    public bool $sessionStarted = false;

    /** The session id given to PHP at the start of the request (from the cookie; '' for none). */
    public ?string $initialSessionId = null;

    /** @var array<string, true> real paths of the rewritten files included in this request (include_once, require_once) */
    private array $included = [];

    public function __construct(public readonly ?Request $request = null)
    {
    }

    /**
     * The context of the request being handled; a detached one outside a request.
     */
    public static function current(): self
    {
        return self::$current ??= new self();
    }

    /**
     * Makes $context the current one (null: none).
     */
    public static function activate(?self $context): void
    {
        self::$current = $context;
    }

    /**
     * Records that the rewritten copy of a file (by the real path of the
     * original) is included in this request.
     *
     * @return bool whether this is the first time in this request (include_once and
     *              require_once include the file then, and only then)
     */
    public function markIncluded(string $real): bool
    {
        if (isset($this->included[$real])) {
            return false;
        }
        $this->included[$real] = true;

        return true;
    }

    public function headersSent(): bool
    {
        return $this->headersSent;
    }

    /**
     * header(): adds or replaces a header line, following PHP's rules
     * (sapi_header_op): trailing blanks are trimmed, a line break or NUL
     * refuses the header, "HTTP/..." sets the status, a text/* Content-Type
     * without a charset gets default_charset, Location sets 302 unless the
     * status is 201 or 3xx, WWW-Authenticate sets 401.
     *
     * @return bool false when the header was refused (a warning was raised)
     */
    public function header(string $line, bool $replace = true, int $responseCode = 0): bool
    {
        if ($this->headersSent) {
            trigger_error('Cannot modify header information - headers already sent', E_USER_WARNING);

            return false;
        }

        $line = rtrim($line, " \t\n\r\v\f");
        if (strpbrk($line, "\r\n") !== false) {
            trigger_error('Header may not contain more than a single header, new line detected', E_USER_WARNING);

            return false;
        }
        if (str_contains($line, "\0")) {
            trigger_error('Header may not contain NUL bytes', E_USER_WARNING);

            return false;
        }

        if (strncasecmp($line, 'HTTP/', 5) === 0) {
            $space = strpos($line, ' ');
            $code = $space === false ? 0 : (int) substr($line, $space + 1);
            if ($code > 0) {
                \http_response_code($code);
            }

            return true;
        }

        $colon = strpos($line, ':');
        if ($colon !== false) {
            $name = strtolower(substr($line, 0, $colon));
            $value = ltrim(substr($line, $colon + 1), ' ');
            if ($name === 'content-type') {
                $charset = (string) ini_get('default_charset');
                if ($charset !== '' && str_starts_with($value, 'text/') && !str_contains($value, 'charset=')) {
                    $line = 'Content-type: ' . $value . ';charset=' . $charset;
                }
                $this->contentTypeSet = true;
            } elseif ($name === 'location') {
                $status = (int) \http_response_code();
                if (($status < 300 || $status > 399) && $status !== 201) {
                    \http_response_code($responseCode > 0 ? $responseCode : 302);
                }
            } elseif ($name === 'www-authenticate') {
                \http_response_code(401);
            }
            if ($replace) {
                $this->remove($name);
            }
            $this->headers[] = [$name, $line];
        } else {
            // PHP keeps a line without a colon (headers_list() shows it) but never sends it.
            $this->headers[] = ["\0", $line];
        }

        if ($responseCode > 0) {
            \http_response_code($responseCode);
        }

        return true;
    }

    /**
     * header_remove(): removes every header of that name, or all of them.
     */
    public function headerRemove(?string $name): void
    {
        if ($this->headersSent) {
            trigger_error('Cannot modify header information - headers already sent', E_USER_WARNING);

            return;
        }
        if ($name === null) {
            $this->headers = [];

            return;
        }
        if (str_contains($name, ':')) {
            trigger_error('Header to delete may not contain colon.', E_USER_WARNING);

            return;
        }
        $this->remove(strtolower(rtrim($name)));
    }

    /**
     * headers_list(): the header lines in the order they were set.
     *
     * @return list<string>
     */
    public function lines(): array
    {
        return array_map(static fn (array $header): string => $header[1], $this->headers);
    }

    /**
     * header_register_callback(): called once, just before the headers go out.
     */
    public function registerHeaderCallback(callable $callback): void
    {
        $this->headerCallback = $callback;
    }

    /**
     * Settles the headers: runs the header callback, adds the session cookie
     * when a session started outside the rewritten code needs one, and the
     * default Content-Type, then marks them sent.
     *
     * @return array<string, list<string>> the response headers, name => values, in order
     */
    public function send(): array
    {
        if (!$this->headersSent) {
            $callback = $this->headerCallback;
            $this->headerCallback = null;
            if ($callback !== null) {
                $callback();
            }
            Functions::settleSession($this);
            if (!$this->contentTypeSet) {
                $mimetype = (string) ini_get('default_mimetype');
                $charset = (string) ini_get('default_charset');
                if ($mimetype !== '') {
                    $this->headers[] = ['content-type', 'Content-Type: ' . $mimetype
                        . ($charset !== '' && strncasecmp($mimetype, 'text/', 5) === 0 ? '; charset=' . $charset : '')];
                }
            }
            $this->headersSent = true;
        }

        $result = [];
        foreach ($this->headers as [, $line]) {
            $colon = strpos($line, ':');
            if ($colon === false || $colon === 0) {
                continue;
            }
            $result[substr($line, 0, $colon)][] = trim(substr($line, $colon + 1), " \t");
        }

        return $result;
    }

    /**
     * Removes the Set-Cookie lines of one cookie (before a session cookie
     * replaces it).
     */
    public function removeCookie(string $name): void
    {
        $prefix = 'set-cookie: ' . strtolower($name) . '=';
        $this->headers = array_values(array_filter(
            $this->headers,
            static fn (array $header): bool => !str_starts_with(strtolower($header[1]), $prefix),
        ));
    }

    private function remove(string $name): void
    {
        $this->headers = array_values(array_filter(
            $this->headers,
            static fn (array $header): bool => $header[0] !== $name,
        ));
    }
}
