<?php

declare(strict_types=1);

namespace Courser\Http;

/**
 * Fills PHP's superglobals from a Request, for code written for PHP-FPM
 * that reads $_GET, $_POST, $_COOKIE, $_FILES, $_SERVER and $_REQUEST.
 *
 * <code>
 * while ($request = $http->waitRequest()) {
 *     Globals::populate($request);
 *     // ... legacy code ...
 * }
 * </code>
 *
 * Every call replaces all six arrays, so nothing leaks from one request to
 * the next. $_SERVER starts each time from the $_SERVER the process had at
 * the first call, without its HTTP_* entries.
 */
final class Globals
{
    /** @var array<array-key, mixed>|null the process's own $_SERVER, captured at the first populate() */
    private static ?array $originalServer = null;

    /** @var array{0: array<array-key, mixed>, 1: array<array-key, mixed>}|null the last base given to server(), and it without HTTP_* */
    private static ?array $filteredBase = null;

    /**
     * Replaces $_GET, $_POST, $_COOKIE, $_FILES, $_SERVER and $_REQUEST with
     * the values of $request.
     *
     * $_POST holds the parsed form (only urlencoded and multipart bodies are
     * parsed by the server, as PHP-FPM does), $_FILES the uploads in PHP's
     * layout, and $_REQUEST merges $_GET, $_POST and $_COOKIE in the order
     * that the request_order (or variables_order) ini setting names, later
     * sources winning.
     *
     * @param string|null                  $requestOrder the letters G, P and C in the order to merge $_REQUEST;
     *                                                   null for the ini settings (PHP's default is "GP")
     * @param array<array-key, mixed>|null $server       $_SERVER when the caller built it already (server())
     */
    public static function populate(Request $request, ?string $requestOrder = null, ?array $server = null): void
    {
        self::$originalServer ??= $_SERVER;

        $_GET = $request->query;
        $_POST = $request->parsed ?? [];
        $_COOKIE = $request->cookies;
        $_FILES = $request->uploads === [] ? [] : self::files($request->uploads);
        $_SERVER = $server ?? self::server($request, self::$originalServer);

        $order = $requestOrder ?? (string) ini_get('request_order');
        if ($order === '') {
            $order = (string) ini_get('variables_order');
        }
        $sources = ['G' => $_GET, 'P' => $_POST, 'C' => $_COOKIE];
        $merged = [];
        foreach (str_split(strtoupper($order)) as $letter) {
            if (isset($sources[$letter])) {
                $merged = array_replace($merged, $sources[$letter]);
            }
        }
        $_REQUEST = $merged;
    }

    /**
     * Builds the server parameters ($_SERVER) of a request, in the way
     * PHP-FPM fills them: REQUEST_URI (path and query), REQUEST_METHOD,
     * REQUEST_TIME, REQUEST_TIME_FLOAT, REMOTE_ADDR (the ipAddress attribute
     * when set), SERVER_PROTOCOL, QUERY_STRING, HTTPS, SERVER_NAME,
     * SERVER_PORT, HTTP_HOST (from the URI, since the Host header is not
     * forwarded), CONTENT_TYPE, CONTENT_LENGTH and an HTTP_* entry per header
     * (values joined with ", "; HTTP_USER_AGENT is always set).
     *
     * @param array<array-key, mixed> $base the entries to start from; its HTTP_*, CONTENT_TYPE and CONTENT_LENGTH entries are dropped
     * @param float|null              $now  the request time; the current time when null
     *
     * @return array<array-key, mixed>
     */
    public static function server(Request $request, array $base = [], ?float $now = null): array
    {
        $now ??= microtime(true);
        // Callers pass the same base every request: filter it once (an O(1) identity check after that).
        if (self::$filteredBase === null || $base !== self::$filteredBase[0]) {
            self::$filteredBase = [$base, array_filter($base, static fn ($key): bool => !is_string($key) || (!str_starts_with($key, 'HTTP_') && $key !== 'CONTENT_TYPE' && $key !== 'CONTENT_LENGTH'), ARRAY_FILTER_USE_KEY)];
        }
        $server = self::$filteredBase[1];

        $uri = parse_url($request->uri);
        $uri = is_array($uri) ? $uri : [];
        $scheme = strtolower($uri['scheme'] ?? 'http');
        $query = $uri['query'] ?? $request->rawQuery;

        $server['REQUEST_URI'] = ($uri['path'] ?? '/') . ($query !== '' ? '?' . $query : '');
        $server['REQUEST_METHOD'] = $request->method;
        $server['REQUEST_TIME'] = (int) $now;
        $server['REQUEST_TIME_FLOAT'] = $now;
        $server['REMOTE_ADDR'] = $request->getRemoteAddr();
        $server['SERVER_PROTOCOL'] = $request->protocol;
        $server['QUERY_STRING'] = $query;
        if ($scheme === 'https') {
            $server['HTTPS'] = 'on';
        } else {
            unset($server['HTTPS']);
        }
        if (isset($uri['host'])) {
            $host = str_contains($uri['host'], ':') && $uri['host'][0] !== '[' ? '[' . $uri['host'] . ']' : $uri['host'];
            $server['SERVER_NAME'] = $uri['host'];
            $server['SERVER_PORT'] = (string) ($uri['port'] ?? ($scheme === 'https' ? 443 : 80));
            $server['HTTP_HOST'] = $host . (isset($uri['port']) ? ':' . $uri['port'] : '');
        }

        $server['HTTP_USER_AGENT'] = '';
        foreach ($request->headers as $name => $values) {
            $key = strtoupper(str_replace('-', '_', (string) $name));
            $value = implode(', ', $values);
            if ($key === 'CONTENT_TYPE' || $key === 'CONTENT_LENGTH') {
                $server[$key] = $value;
            } else {
                $server['HTTP_' . $key] = $value;
            }
        }

        return $server;
    }

    /**
     * Converts the upload tree of a request to PHP's $_FILES layout: a file
     * field is ['name', 'full_path', 'type', 'tmp_name', 'error', 'size'], and
     * a nested field (docs[], a[b]) has those six keys at its top with the
     * nesting under each of them, as PHP does.
     *
     * @param array<array-key, mixed> $uploads
     *
     * @return array<array-key, mixed>
     */
    public static function files(array $uploads): array
    {
        $keys = ['name' => 'name', 'full_path' => 'name', 'type' => 'mime', 'tmp_name' => 'tmpName', 'error' => 'error', 'size' => 'size'];

        $files = [];
        foreach ($uploads as $field => $tree) {
            if (!is_array($tree)) {
                continue;
            }
            foreach ($keys as $phpKey => $uploadKey) {
                $files[$field][$phpKey] = self::pick($tree, $uploadKey);
            }
        }

        return $files;
    }

    /**
     * Tells whether a node of an upload tree is a file (a leaf with name,
     * size, error and tmpName) rather than a branch.
     */
    public static function isUploadLeaf(mixed $node): bool
    {
        return is_array($node)
            && isset($node['error'])
            && is_int($node['error'])
            && array_key_exists('name', $node)
            && array_key_exists('tmpName', $node)
            && !is_array($node['name']);
    }

    /**
     * Projects one key of every leaf of an upload tree, keeping the nesting.
     *
     * @param array<array-key, mixed> $tree
     */
    private static function pick(array $tree, string $key): mixed
    {
        if (self::isUploadLeaf($tree)) {
            $value = $tree[$key] ?? null;

            return match ($key) {
                'error' => (int) $value,
                'size' => (int) $value,
                default => (string) $value,
            };
        }

        $result = [];
        foreach ($tree as $index => $node) {
            if (is_array($node)) {
                $result[$index] = self::pick($node, $key);
            }
        }

        return $result;
    }
}
