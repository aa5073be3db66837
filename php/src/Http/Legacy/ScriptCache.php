<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

/**
 * Rewritten copies of legacy scripts (see Rewriter), written once and then
 * included per request, so that OPcache (when enabled for the CLI) can keep
 * them compiled.
 *
 * The copies live in a directory private to the user (0700; by default
 * sys_get_temp_dir()/courser-legacy-UID), under the original absolute path
 * plus a key of the file's modification time, size and the rewriter
 * version, so that an edited file gets a new copy and error messages still
 * show which file it was:
 *
 *     /tmp/courser-legacy-33/srv/app/public/index.php.5f0c1e9a2b7d.php
 *     /tmp/courser-legacy-33/srv/app/public/index.php.5f0c1e9a2b7d.decl.php (its declarations)
 *
 * Files are written 0600 through a temporary name and rename(), so that
 * workers that start together do not read half-written copies.
 */
final class ScriptCache
{
    private readonly string $dir;

    /** @var array<string, array{0: int, 1: int, 2: string}> real path => [mtime, size, copy] */
    private array $known = [];

    /** @var array<string, string> copy => original, for error messages */
    private array $originals = [];

    /**
     * @param string|null $dir the cache directory; created 0700 when missing. It must belong to this
     *                         user and be closed to others, or the constructor throws.
     *
     * @throws \RuntimeException when the directory cannot be created or is not private
     */
    public function __construct(?string $dir = null)
    {
        $dir ??= rtrim(sys_get_temp_dir(), '/') . '/courser-legacy-' . self::uid();
        $dir = rtrim($dir, '/');
        if (!is_dir($dir) && !@mkdir($dir, 0700, true) && !is_dir($dir)) {
            throw new \RuntimeException(sprintf('Cannot create the legacy script cache directory %s.', $dir));
        }
        if (is_link($dir)) {
            throw new \RuntimeException(sprintf('The legacy script cache directory %s is a symbolic link; refusing to use it.', $dir));
        }
        clearstatcache(true, $dir);
        $owner = fileowner($dir);
        $mode = fileperms($dir);
        if ($owner !== self::uid() || $mode === false || ($mode & 0077) !== 0) {
            throw new \RuntimeException(sprintf(
                'The legacy script cache directory %s must belong to this user (uid %d) and be closed to others (0700); it has uid %s, mode %s.',
                $dir,
                self::uid(),
                var_export($owner, true),
                $mode === false ? '?' : sprintf('%o', $mode & 0777),
            ));
        }
        $this->dir = $dir;
    }

    public function dir(): string
    {
        return $this->dir;
    }

    /**
     * Returns the path of the rewritten copy of a file, writing it when the
     * file is new or has changed.
     *
     * @param string $path a real path (realpath())
     *
     * @throws \RuntimeException when the file cannot be read or the copy cannot be written
     */
    public function compile(string $path): string
    {
        $stat = @stat($path);
        if ($stat === false) {
            throw new \RuntimeException(sprintf('Cannot read %s.', $path));
        }
        [$mtime, $size] = [(int) $stat['mtime'], (int) $stat['size']];
        $known = $this->known[$path] ?? null;
        if ($known !== null && $known[0] === $mtime && $known[1] === $size) {
            return $known[2];
        }

        $key = substr(sha1($path . "\0" . $mtime . "\0" . $size . "\0" . Rewriter::VERSION), 0, 12);
        $copy = $this->dir . $path . '.' . $key . '.php';
        $declarations = $this->dir . $path . '.' . $key . '.decl.php';
        if (!is_file($copy)) {
            $code = @file_get_contents($path);
            if ($code === false) {
                throw new \RuntimeException(sprintf('Cannot read %s.', $path));
            }
            [$body, $declared] = Rewriter::rewrite($code, $path, $declarations);
            $this->makeDir(dirname($copy));
            if ($declared !== null) {
                $this->write($declarations, $declared);
            }
            $this->write($copy, $body);
        }

        $this->known[$path] = [$mtime, $size, $copy];
        $this->originals[$copy] = $path;
        $this->originals[$declarations] = $path;

        return $copy;
    }

    /**
     * Replaces the paths of rewritten copies in a text (an error message, a
     * stack trace) by the paths of the originals.
     */
    public function mapPaths(string $text): string
    {
        return $this->originals === [] ? $text : strtr($text, $this->originals);
    }

    /**
     * The original of a rewritten copy; the path itself for any other file.
     */
    public function original(string $path): string
    {
        return $this->originals[$path] ?? $path;
    }

    private function makeDir(string $dir): void
    {
        if (!is_dir($dir) && !@mkdir($dir, 0700, true) && !is_dir($dir)) {
            throw new \RuntimeException(sprintf('Cannot create %s.', $dir));
        }
    }

    private function write(string $path, string $contents): void
    {
        $temporary = $path . '.' . bin2hex(random_bytes(6)) . '.tmp';
        $handle = @fopen($temporary, 'x');
        if ($handle === false) {
            throw new \RuntimeException(sprintf('Cannot write %s.', $temporary));
        }
        chmod($temporary, 0600);
        $written = fwrite($handle, $contents);
        fclose($handle);
        if ($written !== strlen($contents) || !rename($temporary, $path)) {
            @unlink($temporary);
            throw new \RuntimeException(sprintf('Cannot write %s.', $path));
        }
    }

    private static function uid(): int
    {
        return function_exists('posix_geteuid') ? posix_geteuid() : (int) getmyuid();
    }
}
