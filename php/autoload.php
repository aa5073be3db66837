<?php

/**
 * PSR-4 autoloader for the Courser SDK, for projects that do not use Composer.
 *
 * Usage: require 'path/to/php/autoload.php';
 * It maps the namespace Courser\ to the src/ directory next to this file,
 * exactly as the "autoload" section of composer.json does.
 */

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    $prefix = 'Courser\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }

    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
