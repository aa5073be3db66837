<?php

return [
    'defaults' => ['guard' => 'web', 'passwords' => 'users'],
    'guards' => [
        'web' => ['driver' => 'session', 'provider' => 'users'],
    ],
    'providers' => [
        // App\Auth\DemoUserProvider: alice and bob, no database.
        'users' => ['driver' => 'demo'],
    ],
];
